//! A run killed at random moments and resumed ends with the same weights
//! as an uninterrupted run, bit for bit (file order, CPU).

use crate::common::KillClock;
use crate::support::*;
use std::time::Instant;

#[test]
fn sigkill_at_random_moments_then_resume_gives_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "d.jsonl", &records(6));
    let d = data.to_str().unwrap();
    let args = |out: &str| -> Vec<String> {
        [
            "--data",
            d,
            "--out",
            out,
            "--steps",
            "6",
            "--micro-batch",
            "2",
            "--grad-accum",
            "2",
            "--lr",
            "1e-3",
            "--order",
            "shuffle",
            "--seed",
            "7",
            "--save-every",
            "1",
            "--train",
            "encoder,queries,projector",
            "--resume",
            "--json",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |out: &std::path::Path| {
        let a = args(out.to_str().unwrap());
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut c = train_cmd(tmp.path(), &crate::common::golden_model(), &refs);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let clean = tmp.path().join("clean");
    let t = Instant::now();
    assert!(run(&clean).status().unwrap().success());
    let span = t.elapsed().as_millis() as u64;

    let crashed = tmp.path().join("crashed");
    let mut clock = KillClock::new("train_resume", 6, span);
    for i in 0..clock.runs() {
        clock.kill(i, run(&crashed).spawn().unwrap());
    }
    let kills = clock.kills;
    assert!(
        kills > 0,
        "no run was interrupted (a clean run takes {span} ms)"
    );
    // Resume until it finishes (a run may have been killed before its first save).
    let mut tries = 0;
    while !run(&crashed).status().unwrap().success() {
        tries += 1;
        assert!(tries < 3, "resuming keeps failing");
    }
    for f in ["model.safetensors", "llm1/model.safetensors"] {
        assert!(
            std::fs::read(clean.join(f)).unwrap() == std::fs::read(crashed.join(f)).unwrap(),
            "{f} differs after {kills} kills"
        );
    }
    let log = |dir: &std::path::Path| -> Vec<f64> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("train/run.json")).unwrap())
                .unwrap();
        v["log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["loss"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(log(&clean), log(&crashed), "the loss log differs");
    assert!(
        !crashed.join("train/state.safetensors").exists(),
        "the state outlived the run"
    );
}
