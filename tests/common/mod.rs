//! Shared test helpers: fixture paths, the golden expectations, running
//! the `c3` binary, and inputs for the crash tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod forcing;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn golden_model() -> PathBuf {
    fixtures().join("golden/c3-tiny")
}

pub struct GoldenCase {
    pub name: String,
    pub text: String,
    pub text_ids: Vec<u32>,
    pub decoder_prompt_ids: Vec<u32>,
    pub repeat_ids: Vec<u32>,
    pub top2_gap: Vec<f64>,
}

impl GoldenCase {
    /// The reference's decoder prompt taken verbatim, its one latent block
    /// right after the `<img>` token.
    pub fn reference_prompt(&self) -> c3::cascade::Prompt {
        let start = self
            .decoder_prompt_ids
            .iter()
            .position(|&t| t == c3::tokenize::special::IMG_START)
            .expect("the reference prompt has an <img> token")
            + 1;
        c3::cascade::Prompt {
            ids: self.decoder_prompt_ids.clone(),
            latent_starts: vec![start],
            latent_lens: vec![32],
        }
    }
}

/// Greedy ids the decoder generates from `lat` (one latent block) in the
/// case's reference prompt, as many as the reference's repeat ids.
pub fn greedy_reference_ids(
    dec: &c3::cascade::c3::C3Decoder,
    case: &GoldenCase,
    lat: candle_core::Tensor,
) -> Vec<u32> {
    let opts = c3::generate::GenOptions {
        max_new_tokens: case.repeat_ids.len(),
        ..c3::generate::GenOptions::default()
    };
    dec.generate(&case.reference_prompt(), &[lat], &opts, |_| true)
        .unwrap()
        .ids
}

/// `v` rounded to bf16 and back.
pub fn bf16_rounded(v: &[f32]) -> Vec<f32> {
    use candle_core::{DType, Device, Tensor};
    Tensor::new(v, &Device::Cpu)
        .and_then(|t| t.to_dtype(DType::BF16))
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .unwrap()
}

pub fn golden_cases() -> Vec<GoldenCase> {
    let dir = fixtures().join("golden");
    let raw = std::fs::read_to_string(dir.join("expected/expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let ids = |x: &serde_json::Value| -> Vec<u32> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect()
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = e["text"].as_str().unwrap().to_string();
            GoldenCase {
                name: file.trim_end_matches(".txt").to_string(),
                text: std::fs::read_to_string(dir.join("texts").join(&file)).unwrap(),
                text_ids: ids(&e["text_ids"]),
                decoder_prompt_ids: ids(&e["decoder_prompt_ids"]),
                repeat_ids: ids(&e["repeat_ids"]),
                top2_gap: e["top2_gap"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_f64().unwrap())
                    .collect(),
            }
        })
        .collect()
}

/// The device model tests run on: `C3_DEVICE` (auto, cpu or cuda; auto is
/// GPU 0 in a `cuda` build on a machine with one, else the CPU).
pub fn test_device() -> candle_core::Device {
    c3::options::DeviceArg::env_device().unwrap_or_else(|e| panic!("test device: {e}"))
}

pub fn golden_npy(name: &str, kind: &str) -> (Vec<usize>, Vec<f32>) {
    c3::npy::read_f32(&fixtures().join(format!("golden/expected/{name}.{kind}.npy"))).unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `c3 --store STORE ARGS...` through the built binary, without a
/// `C3_MODEL` from the environment.
pub fn c3(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("C3_MODEL")
        .output()
        .unwrap()
}

/// [`c3`] with ingest times pinned (`SOURCE_DATE_EPOCH`), so exports and
/// listings of separate runs compare byte for byte.
pub fn c3_pinned(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_c3"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("C3_MODEL")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

/// The output of a command that must have succeeded.
pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The JSON a successful command printed on stdout.
pub fn json(o: Output) -> serde_json::Value {
    serde_json::from_slice(&ok(o).stdout).unwrap()
}

/// `count` documents `{prefix}NN.txt` in `dir`, consecutive pieces of the
/// fixture book of `min_len` plus up to `spread` bytes each (some span
/// several chunks).
pub fn book_parts(dir: &Path, prefix: &str, count: usize, min_len: usize, spread: usize) {
    let book = std::fs::read_to_string(fixtures().join("corpus/alice-in-wonderland.txt")).unwrap();
    let mut pos = 0;
    for i in 0..count {
        let len = min_len + (i * 2654435761usize) % spread;
        let mut end = (pos + len).min(book.len());
        while !book.is_char_boundary(end) {
            end += 1;
        }
        std::fs::write(dir.join(format!("{prefix}{i:02}.txt")), &book[pos..end]).unwrap();
        pos = end;
    }
}

/// Kills child processes at pseudo-random moments within a clean run's
/// span, for the crash tests. The seed comes from the clock and is printed
/// under `label`, so a failure can be replayed from the log.
///
/// Delays are sorted shortest first and kept within 4/5 of the clean run;
/// each run that ends before its kill halves the later delays. A resumed
/// run is shorter than the clean one, and a host busier during the clean
/// run than after it once left nothing interrupted in six tries.
pub struct KillClock {
    delays: Vec<u64>,
    shift: u32,
    pub kills: usize,
}

impl KillClock {
    pub fn new(label: &str, runs: usize, span_ms: u64) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("{label} seed {seed} span {span_ms} ms");
        let mut x = seed | 1;
        let span = span_ms.max(10);
        let mut delays: Vec<u64> = (0..runs)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % span * 4 / 5
            })
            .collect();
        delays.sort_unstable();
        KillClock {
            delays,
            shift: 0,
            kills: 0,
        }
    }

    pub fn runs(&self) -> usize {
        self.delays.len()
    }

    /// Lets run `i` go on for its delay, then SIGKILLs it if it is still
    /// running; returns the delay used and whether it was killed.
    pub fn kill(&mut self, i: usize, mut child: std::process::Child) -> (u64, bool) {
        let d = self.delays[i] >> self.shift;
        std::thread::sleep(std::time::Duration::from_millis(d));
        let killed = child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap();
            self.kills += 1;
        } else {
            self.shift += 1;
        }
        child.wait().unwrap();
        (d, killed)
    }
}
