//! `c3 train` end to end on the tiny golden model: the saved checkpoint,
//! what moves and what does not, bad input, the side outputs.

use crate::common::golden_model;
use crate::support::*;
use c3::cascade::c3::{C3Checkpoint, C3Encoder};
use c3::train::example::{build, Record};
use c3::train::load::{load_checkpoint, Selection};
use candle_core::{DType, Device};

fn common_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "--data",
        data,
        "--out",
        out,
        "--micro-batch",
        "2",
        "--grad-accum",
        "1",
        "--lr",
        "1e-3",
        "--order",
        "file",
        "--save-every",
        "0",
    ]
}

#[test]
fn a_trained_checkpoint_has_the_released_layout_and_loads_in_c3() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "d.jsonl", &records(4));
    let out = tmp.path().join("out");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = common_args(d, o);
    args.extend(["--steps", "2", "--json"]);
    let run = train(tmp.path(), &args);
    assert!(run.status.success(), "{}", stderr(&run));
    let lines = json_lines(&run);
    let steps: Vec<_> = lines.iter().filter(|l| l["event"] == "step").collect();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["lr"], 0.0, "the first step runs at lr 0");
    let report = lines.last().unwrap();
    assert_eq!(report["event"], "report");
    assert_eq!(
        (report["steps"].as_u64(), report["nonfinite_steps"].as_u64()),
        (Some(2), Some(0))
    );
    assert!(
        report["peak_rss_bytes"].as_u64().unwrap() > 0 && report["tokens"].as_u64().unwrap() > 0
    );

    // Exactly the released names and shapes, in f32.
    let start = golden_model();
    for file in ["model.safetensors", "llm1/model.safetensors"] {
        let (a, b) = (layout(&start.join(file)), layout(&out.join(file)));
        let strip = |v: &[(String, String, Vec<usize>)]| -> Vec<(String, Vec<usize>)> {
            v.iter().map(|(n, _, s)| (n.clone(), s.clone())).collect()
        };
        assert_eq!(strip(&a), strip(&b), "{file}");
        assert!(b.iter().all(|(_, d, _)| d == "F32"), "{file}");
        assert!(!b
            .iter()
            .any(|(n, _, _)| n.starts_with("model.llm1.") || n == "lm_head.weight"));
    }
    for f in [
        "config.json",
        "llm1/config.json",
        "qwen.tiktoken",
        "generation_config.json",
        "loss.svg",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["torch_dtype"], "float32");
    assert_eq!(cfg["latent_token_len"], 32);

    // c3's own encoder gives the trainer's latents.
    let ckpt = C3Checkpoint::open(&out).unwrap();
    let (p, net) = load_checkpoint(&ckpt, &Selection::all(), DType::F32, &Device::Cpu, 0).unwrap();
    let text = "Alice was beginning to get very tired of sitting by her sister";
    let r = Record {
        context: text.into(),
        human: "<image>".into(),
        gpt: "x".into(),
    };
    let ex = build(&ckpt.tokenizer().unwrap(), 32, &r).unwrap();
    let trained = net.latents(&p, &[&ex]).unwrap().squeeze(0).unwrap();
    let enc = C3Encoder::load_quantized(&ckpt, DType::F32, &Device::Cpu, None).unwrap();
    let ours = enc.project(&enc.encode_text(text).unwrap()).unwrap();
    let d = (trained - ours)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
    // And the command line reads it like any checkpoint.
    let txt = write(tmp.path(), "t.txt", text);
    let npy = tmp.path().join("lat.npy");
    let enc = std::process::Command::new(env!("CARGO_BIN_EXE_c3"))
        .args([
            "--model",
            o,
            "encode",
            "--text",
            txt.to_str().unwrap(),
            "--out",
            npy.to_str().unwrap(),
        ])
        .env_remove("C3_MODEL")
        .output()
        .unwrap();
    assert!(enc.status.success(), "{}", stderr(&enc));
    let rep = std::process::Command::new(env!("CARGO_BIN_EXE_c3"))
        .args([
            "--model",
            o,
            "repeat",
            "--text",
            txt.to_str().unwrap(),
            "--max-new-tokens",
            "4",
        ])
        .env_remove("C3_MODEL")
        .output()
        .unwrap();
    assert!(rep.status.success(), "{}", stderr(&rep));
    // The weights did move.
    let before = tensors(&start.join("model.safetensors"));
    let after = tensors(&out.join("model.safetensors"));
    assert_ne!(
        values(&before["model.Q.weight"]),
        values(&after["model.Q.weight"])
    );
}

#[test]
fn training_queries_and_projector_moves_only_those_and_frozen_tensors_stay_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "d.jsonl", &records(4));
    let out = tmp.path().join("out");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = common_args(d, o);
    args.extend(["--steps", "2", "--train", "queries,projector"]);
    let run = train(tmp.path(), &args);
    assert!(run.status.success(), "{}", stderr(&run));
    let start = golden_model();
    let moved = [
        "model.Q.weight",
        "model.mm_projector.weight",
        "model.mm_projector.bias",
    ];
    for file in ["model.safetensors", "llm1/model.safetensors"] {
        let (a, b) = (tensors(&start.join(file)), tensors(&out.join(file)));
        for (name, t) in &a {
            let (x, y) = (values(t), values(&b[name]));
            match moved.contains(&name.as_str()) {
                true => assert_ne!(x, y, "{name} did not train"),
                false => assert!(
                    x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{name} changed"
                ),
            }
        }
    }
    // --save-dtype bf16: the frozen tensors are the release's bytes exactly.
    let out2 = tmp.path().join("out2");
    let mut args = common_args(d, out2.to_str().unwrap());
    args.extend([
        "--steps",
        "1",
        "--train",
        "projector",
        "--save-dtype",
        "bf16",
    ]);
    let run = train(tmp.path(), &args);
    assert!(run.status.success(), "{}", stderr(&run));
    let raw = |p: &std::path::Path, name: &str| {
        let t = candle_core::safetensors::load(p, &Device::Cpu).unwrap();
        let t = &t[name];
        (t.dtype(), values(&t.to_dtype(DType::F32).unwrap()))
    };
    let file = "llm1/model.safetensors";
    let name = "model.layers.0.mlp.up_proj.weight";
    assert_eq!(raw(&start.join(file), name), raw(&out2.join(file), name));
}

#[test]
fn bad_input_is_refused_with_its_place_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let good = record("some text", "<image>\nRepeat the text: ", "some text");
    let cases = [
        (
            "missing-turn.jsonl",
            format!(
                "{good}\n{}",
                r#"{"conversations": [{"from": "context", "value": "c"}, {"from": "gpt", "value": "g"}]}"#
            ),
            "missing-turn.jsonl:2: record 1: `conversations`: no \"human\" turn",
        ),
        (
            "no-image.json",
            format!(
                "[\n{good},\n{good},\n{}\n]",
                record("c", "Repeat the text: ", "g")
            ),
            "no-image.json:4: record 2: `conversations[1].value`: no `<image>`",
        ),
        (
            "empty-context.jsonl",
            record("  ", "<image>", "g"),
            "empty-context.jsonl:1: record 0: `conversations[0].value`: empty context",
        ),
        (
            "not-json.jsonl",
            format!("{good}\n{{\"conversations\": [}}"),
            "not-json.jsonl:2: record 1: `(record)`: invalid JSON",
        ),
    ];
    for (name, text, want) in cases {
        let data = write(tmp.path(), name, &text);
        let out = tmp.path().join(format!("out-{name}"));
        let mut args = common_args(data.to_str().unwrap(), out.to_str().unwrap());
        args.extend(["--steps", "1"]);
        let run = train(tmp.path(), &args);
        assert!(!run.status.success(), "{name} was accepted");
        assert!(stderr(&run).contains(want), "{name}: {}", stderr(&run));
        assert!(!out.exists(), "{name}: --out was written");
    }
    let data = write(tmp.path(), "ok.jsonl", &records(2));
    let d = data.to_str().unwrap();

    // An unknown --train part.
    let out = tmp.path().join("out-part");
    let mut args = common_args(d, out.to_str().unwrap());
    args.extend(["--steps", "1", "--train", "queries,lm_head"]);
    let run = train(tmp.path(), &args);
    assert!(
        !run.status.success() && stderr(&run).contains("unknown part `lm_head`"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists());

    // An output directory that holds another model.
    let taken = tmp.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::copy(
        golden_model().join("config.json"),
        taken.join("config.json"),
    )
    .unwrap();
    for resume in [false, true] {
        let mut args = common_args(d, taken.to_str().unwrap());
        args.extend(["--steps", "1"]);
        if resume {
            args.push("--resume");
        }
        let run = train(tmp.path(), &args);
        assert!(
            !run.status.success() && stderr(&run).contains("holds a model"),
            "{}",
            stderr(&run)
        );
        assert_eq!(
            std::fs::read_dir(&taken).unwrap().count(),
            1,
            "--out was written"
        );
    }

    // NaN weights in the starting checkpoint.
    let model = copy_model(tmp.path());
    let st = model.join("model.safetensors");
    let mut bytes = std::fs::read(&st).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let at = 8 + n + h["model.Q.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[at..at + 2].copy_from_slice(&0x7fc0u16.to_le_bytes()); // a bf16 NaN
    std::fs::write(&st, bytes).unwrap();
    let out = tmp.path().join("out-nan");
    let mut args = common_args(d, out.to_str().unwrap());
    args.extend(["--steps", "1"]);
    let run = train_cmd(tmp.path(), &model, &args).output().unwrap();
    let e = stderr(&run);
    assert!(
        !run.status.success() && e.contains("model.Q.weight") && e.contains("NaN"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn a_non_finite_loss_skips_the_step_and_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "d.jsonl", &records(2));
    let out = tmp.path().join("out");
    let mut args = common_args(data.to_str().unwrap(), out.to_str().unwrap());
    // An absurd learning rate sends the projector to ~1e38: the next
    // steps' losses overflow.
    let lr = args.iter().position(|&a| a == "--lr").unwrap();
    args[lr + 1] = "3e38";
    args.extend([
        "--steps",
        "3",
        "--warmup-ratio",
        "0",
        "--train",
        "projector",
        "--json",
    ]);
    let run = train(tmp.path(), &args);
    assert!(run.status.success(), "{}", stderr(&run));
    let lines = json_lines(&run);
    let skipped = lines
        .iter()
        .filter(|l| l["event"] == "step" && l["skipped"] == true)
        .count();
    assert!(skipped >= 1);
    assert_eq!(
        lines.last().unwrap()["nonfinite_steps"].as_u64(),
        Some(skipped as u64)
    );
    assert!(stderr(&run).contains("not finite; step skipped"));
}

#[test]
fn dry_run_prints_the_plan_and_refuses_a_run_that_cannot_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "d.jsonl", &records(2));
    let out = tmp.path().join("out");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = common_args(d, o);
    args.extend(["--dry-run", "--json", "--memory", "1000"]);
    let run = train(tmp.path(), &args);
    assert!(run.status.success(), "{}", stderr(&run));
    let plan = &json_lines(&run)[0];
    assert_eq!(plan["event"], "plan");
    let parts = plan["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 4);
    // The tiny decoder: 151860 × 64 embeddings dominate.
    assert!(parts[3]["params"].as_u64().unwrap() > 151_860 * 64);
    assert_eq!(plan["fits"], true);
    assert!(!out.exists());
    // 1 MB cannot hold it: the dry run says so, a real run refuses up front.
    for dry in [true, false] {
        let mut args = common_args(d, o);
        args.extend(["--memory", "0.001", "--steps", "1"]);
        if dry {
            args.push("--dry-run");
        }
        let run = train(tmp.path(), &args);
        assert!(!run.status.success());
        assert!(
            stderr(&run).contains("not fit") || stderr(&run).contains("the device offers"),
            "{}",
            stderr(&run)
        );
        assert!(!out.exists());
    }
}

#[test]
fn evaluation_the_loss_curve_and_a_finished_run_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "d.jsonl", &records(4));
    let eval = write(
        tmp.path(),
        "e.jsonl",
        &records(6).lines().skip(4).collect::<Vec<_>>().join("\n"),
    );
    let out = tmp.path().join("out");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = common_args(d, o);
    args.extend([
        "--steps",
        "2",
        "--json",
        "--eval-data",
        eval.to_str().unwrap(),
        "--eval-every",
        "1",
    ]);
    let run = train(tmp.path(), &args);
    assert!(run.status.success(), "{}", stderr(&run));
    let evals: Vec<_> = json_lines(&run)
        .into_iter()
        .filter(|l| l["event"] == "eval")
        .collect();
    assert_eq!(
        evals
            .iter()
            .map(|e| e["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(evals
        .iter()
        .all(|e| (0.0..=1.0).contains(&e["accuracy"].as_f64().unwrap())));
    let svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("evaluation loss"));
    // `--plot DIR` draws it again from the record.
    std::fs::remove_file(out.join("loss.svg")).unwrap();
    let plot = std::process::Command::new(env!("CARGO_BIN_EXE_c3"))
        .args(["train", "--plot", o])
        .output()
        .unwrap();
    assert!(
        plot.status.success() && out.join("loss.svg").is_file(),
        "{}",
        stderr(&plot)
    );
    // A finished run: refused without --resume, reported and left alone with it.
    let again = train(tmp.path(), &args);
    assert!(!again.status.success() && stderr(&again).contains("finished training run"));
    let before = std::fs::read(out.join("model.safetensors")).unwrap();
    args.push("--resume");
    let again = train(tmp.path(), &args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        json_lines(&again).last().unwrap()["steps"].as_u64(),
        Some(2)
    );
    assert_eq!(
        before,
        std::fs::read(out.join("model.safetensors")).unwrap()
    );
}

#[test]
fn records_from_text_files_and_from_the_store() {
    use c3::train::sources::{chunk_records, text_chunks, Mix};
    let tmp = tempfile::tempdir().unwrap();
    let book =
        std::fs::read_to_string(crate::common::fixtures().join("corpus/alice-in-wonderland.txt"))
            .unwrap();
    let mut end = 6000;
    while !book.is_char_boundary(end) {
        end += 1;
    }
    let txt = write(tmp.path(), "alice.txt", &book[..end]);
    let tok = C3Checkpoint::open(&golden_model())
        .unwrap()
        .tokenizer()
        .unwrap();
    let chunks = text_chunks(std::slice::from_ref(&txt), &tok, 200).unwrap();
    let n = chunks.len();
    assert!(n >= 6, "{n} chunks");
    let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
    let mix: Mix = "reconstruct=0.5,continue=0.5".parse().unwrap();
    let recs = chunk_records(chunks, &tok, mix, 1).unwrap();
    let cont: Vec<_> = recs.iter().filter(|(_, r)| r.human == "<image>").collect();
    assert_eq!(cont.len(), (n as f64 * 0.5).round() as usize);
    for (o, r) in &recs {
        let whole = &texts[o.index];
        match r.human.as_str() {
            "<image>" => {
                // Split at a token boundary at 40-70% of the chunk's tokens.
                assert_eq!(format!("{}{}", r.context, r.gpt), *whole);
                let share = tok.encode_text(&r.context).unwrap().len() as f64
                    / tok.encode_text(whole).unwrap().len() as f64;
                assert!((0.35..=0.75).contains(&share), "{share}");
            }
            _ => assert_eq!((&r.context, &r.gpt), (whole, whole)),
        }
    }
    // The same seed draws the same records.
    let again = chunk_records(
        text_chunks(std::slice::from_ref(&txt), &tok, 200).unwrap(),
        &tok,
        mix,
        1,
    )
    .unwrap();
    assert_eq!(recs, again);

    // --from-store: the chunks of an ingested document.
    let store = tmp.path().join("store");
    let ing = std::process::Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(&store)
        .arg("--model")
        .arg(golden_model())
        .args(["ingest", "--chunk-tokens", "200", txt.to_str().unwrap()])
        .env_remove("C3_MODEL")
        .output()
        .unwrap();
    assert!(ing.status.success(), "{}", stderr(&ing));
    let out = tmp.path().join("out");
    let run = train(
        &store,
        &[
            "--from-store",
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "1",
            "--micro-batch",
            "2",
            "--grad-accum",
            "1",
            "--save-every",
            "0",
            "--json",
            "--train",
            "projector",
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        json_lines(&run).last().unwrap()["records"].as_u64(),
        Some(n as u64)
    );
}

#[test]
fn too_long_records_are_skipped_and_counted_and_the_decoder_lr_ratio_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "word ".repeat(60);
    let text = format!(
        "{}\n{}",
        records(3),
        record(&long, "<image>\nRepeat the text: ", &long)
    );
    let data = write(tmp.path(), "d.jsonl", &text);
    let out = tmp.path().join("out");
    let mut args = common_args(data.to_str().unwrap(), out.to_str().unwrap());
    // The frame is 65 decoder ids; the three short records fit 100, the long one does not.
    args.extend([
        "--steps",
        "2",
        "--max-length",
        "100",
        "--json",
        "--train",
        "projector,decoder",
        "--decoder-lr-ratio",
        "0",
    ]);
    let run = train(tmp.path(), &args);
    assert!(run.status.success(), "{}", stderr(&run));
    let report = json_lines(&run).pop().unwrap();
    assert_eq!(
        (
            report["records"].as_u64(),
            report["skipped_records"].as_u64()
        ),
        (Some(3), Some(1))
    );
    let why = report["skipped"][0].as_str().unwrap();
    assert!(why.contains("d.jsonl:4: record 3"), "{why}");
    // A decoder learning rate of 0: the decoder stays, the projector moves.
    let (s, t) = (
        tensors(&golden_model().join("model.safetensors")),
        tensors(&out.join("model.safetensors")),
    );
    for (name, a) in &s {
        let same = values(a) == values(&t[name]);
        assert_eq!(same, !name.starts_with("model.mm_projector"), "{name}");
    }
}
