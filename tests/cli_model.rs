//! The `c3` binary on the golden model: tokenize, encode, repeat and their errors.
mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn c3(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_c3"))
        .args(args)
        .env_remove("C3_MODEL")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text_path(name: &str) -> String {
    fixtures()
        .join(format!("golden/texts/{name}.txt"))
        .display()
        .to_string()
}

fn stdout_ids(out: &Output) -> Vec<u32> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn repeat_ids_print_the_golden_ids() {
    let model = golden_model().display().to_string();
    for case in golden_cases() {
        let n = case.repeat_ids.len().to_string();
        // --model after the subcommand: it is a global option.
        let out = c3(&[
            "repeat",
            "--text",
            &text_path(&case.name),
            "--ids",
            "--max-new-tokens",
            &n,
            "--model",
            &model,
        ]);
        assert_eq!(stdout_ids(&out), case.repeat_ids, "{}", case.name);
    }
}

#[test]
fn tokenize_prints_golden_ids_and_model_comes_from_env() {
    for case in golden_cases() {
        let out = Command::new(env!("CARGO_BIN_EXE_c3"))
            .args(["tokenize", "--text", &text_path(&case.name)])
            .env("C3_MODEL", golden_model())
            .output()
            .unwrap();
        assert_eq!(stdout_ids(&out), case.text_ids, "{}", case.name);
    }
}

/// `--encoder-precision dense` writes the reference's arrays (f32 parity);
/// the default (i16 products on a CPU with AVX2) stays within what rounding
/// them to bf16 would change, element by element.
#[test]
fn encode_writes_golden_npy() {
    let tmp = tempfile::tempdir().unwrap();
    let model = golden_model().display().to_string();
    let text = text_path("english");
    for precision in ["dense", "auto"] {
        for (flag, kind) in [(None, "latents"), (Some("--raw"), "encoder_hidden")] {
            let out_path = tmp.path().join(format!("{kind}-{precision}.npy"));
            let mut args = vec![
                "--model",
                &model,
                "--encoder-precision",
                precision,
                "encode",
                "--text",
                &text,
                "--out",
                out_path.to_str().unwrap(),
            ];
            args.extend(flag);
            let out = c3(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (shape, got) = c3::npy::read_f32(&out_path).unwrap();
            let (want_shape, want) = golden_npy("english", kind);
            assert_eq!(shape, want_shape);
            let d = max_abs_diff(&got, &want);
            if precision == "dense" {
                assert!(d < 1e-4, "{kind}: {d}");
            } else {
                let bf16 = bf16_rounded(&want);
                let rounding = max_abs_diff(&bf16, &want);
                assert!(
                    d < rounding,
                    "{kind}: {d} over a bf16 rounding ({rounding})"
                );
            }
        }
    }
}

fn expect_error(args: &[&str], needles: &[&str]) {
    let out = c3(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} should mention {n:?}");
    }
}

#[test]
fn bad_input_text_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let model = golden_model().display().to_string();
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    let binary = tmp.path().join("bin.txt");
    std::fs::write(&binary, b"ok\xff\xfe").unwrap();
    let missing = tmp.path().join("nope.txt");
    for cmd in ["tokenize", "repeat"] {
        expect_error(
            &["--model", &model, cmd, "--text", empty.to_str().unwrap()],
            &["empty.txt", "empty"],
        );
        expect_error(
            &["--model", &model, cmd, "--text", binary.to_str().unwrap()],
            &["bin.txt", "not UTF-8", "offset 2"],
        );
        expect_error(
            &["--model", &model, cmd, "--text", missing.to_str().unwrap()],
            &["nope.txt"],
        );
    }
}

#[test]
fn missing_model_is_reported() {
    expect_error(&["tokenize", "--text", "-"], &["--model"]);
    expect_error(
        &["--model", "/definitely/not/here", "repeat", "--text", "-"],
        &["/definitely/not/here", "not a directory"],
    );
}

#[test]
fn long_text_warns_or_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = golden_model().display().to_string();
    // ~1,500 tokens: over the trained length, inside the position limit.
    let long = tmp.path().join("long.txt");
    std::fs::write(
        &long,
        "The quick brown fox jumps over the lazy dog. ".repeat(150),
    )
    .unwrap();
    let out = c3(&[
        "--model",
        &model,
        "repeat",
        "--text",
        long.to_str().unwrap(),
        "--max-new-tokens",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));

    // Past the encoder's 32,768 positions: refused, pointing at chunking.
    let huge = tmp.path().join("huge.txt");
    std::fs::write(&huge, "word ".repeat(33_000)).unwrap();
    expect_error(
        &[
            "--model",
            &model,
            "encode",
            "--text",
            huge.to_str().unwrap(),
            "--out",
            "x.npy",
        ],
        &["limit", "c3 ingest"],
    );
    assert!(!Path::new("x.npy").exists());
}

/// `--device cuda` in a build without CUDA is refused by name, never run on
/// the CPU in its place; an unknown device or `C3_DEVICE` value is named.
#[cfg(not(feature = "cuda"))]
#[test]
fn device_choice_is_checked() {
    let model = golden_model().display().to_string();
    let text = text_path("english");
    expect_error(
        &[
            "--model", &model, "--device", "cuda", "repeat", "--text", &text,
        ],
        &["--device cuda", "without the `cuda` feature"],
    );
    expect_error(
        &[
            "--model", &model, "--device", "tpu", "repeat", "--text", &text,
        ],
        &["tpu"],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_c3"))
        .args([
            "--model",
            &model,
            "repeat",
            "--ids",
            "--max-new-tokens",
            "3",
        ])
        .args(["--text", &text])
        .env("C3_DEVICE", "cpu")
        .output()
        .unwrap();
    assert_eq!(stdout_ids(&out).len(), 3);
}

/// The precision options are checked by name: i16 is not a decoder format,
/// and an unknown encoder precision lists the valid ones.
#[test]
fn precision_choice_is_checked() {
    let model = golden_model().display().to_string();
    let text = text_path("english");
    expect_error(
        &[
            "--model",
            &model,
            "--decoder-quant",
            "i16",
            "repeat",
            "--text",
            &text,
        ],
        &["i16", "--encoder-precision", "q8_0 or q4k"],
    );
    expect_error(
        &[
            "--model",
            &model,
            "--encoder-precision",
            "int4",
            "repeat",
            "--text",
            &text,
        ],
        &["int4", "auto", "dense", "i16"],
    );
    // Explicit i16 (where the CPU has AVX2) reconstructs like the default.
    if c3::model::quant::i16_supported() {
        let out = c3(&[
            "--model",
            &model,
            "--encoder-precision",
            "i16",
            "repeat",
            "--ids",
            "--max-new-tokens",
            "3",
            "--text",
            &text,
        ]);
        assert_eq!(stdout_ids(&out).len(), 3);
    }
    // A named kernel runs where the CPU has its features and is refused,
    // naming them, where it does not.
    #[cfg(target_arch = "x86_64")]
    for k in c3::kernels::i16_gemm::Kernel::ALL {
        let args = [
            "--model",
            &model,
            "--encoder-precision",
            k.name(),
            "repeat",
            "--ids",
            "--max-new-tokens",
            "3",
            "--text",
            &text,
        ];
        if k.runs_here() {
            assert_eq!(stdout_ids(&c3(&args)).len(), 3, "{}", k.name());
        } else {
            eprintln!(
                "{}: this CPU lacks {}: checking the refusal",
                k.name(),
                k.features()
            );
            expect_error(&args, &[k.name(), k.features()]);
        }
    }
}
