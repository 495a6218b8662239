//! Parity with the PyTorch reference of C3-TRAIN.md on `golden/c3-tiny`
//! (fixtures in `tests/fixtures/golden-train/`).

use crate::common::{fixtures, golden_model};
use c3::cascade::c3::C3Checkpoint;
use c3::train::example::{build, Example};
use c3::train::records::read_file;
use serde_json::Value;
use std::path::PathBuf;

fn dir() -> PathBuf {
    fixtures().join("golden-train")
}

fn expected() -> Value {
    let raw = std::fs::read_to_string(dir().join("expected/expected.json")).unwrap();
    serde_json::from_str(&raw).unwrap()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

pub fn examples() -> Vec<Example> {
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let tok = ckpt.tokenizer().unwrap();
    read_file(&dir().join("records.json"))
        .unwrap()
        .iter()
        .map(|(_, r)| build(&tok, ckpt.latent_len(), r).unwrap())
        .collect()
}

#[test]
fn ids_and_labels_equal_the_references() {
    let exp = expected();
    let ex = examples();
    assert_eq!(ex.len(), 4);
    for (i, e) in ex.iter().enumerate() {
        let enc: Vec<i64> = e.enc_ids.iter().map(|&x| x as i64).collect();
        let dec: Vec<i64> = e.dec_ids.iter().map(|&x| x as i64).collect();
        let lab: Vec<i64> = e.labels.iter().map(|&x| x as i64).collect();
        assert_eq!(enc, ints(&exp["encoder_ids"][i]), "record {i}: encoder ids");
        assert_eq!(dec, ints(&exp["decoder_ids"][i]), "record {i}: decoder ids");
        assert_eq!(lab, ints(&exp["labels"][i]), "record {i}: labels");
        assert_eq!(e.dec_ids[e.latent_start - 1], 151857);
        assert_eq!(e.enc_ids[e.query_start - 1], 151857);
    }
}

fn one(context: &str, human: &str, gpt: &str) -> Example {
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let tok = ckpt.tokenizer().unwrap();
    let r = c3::train::example::Record {
        context: context.into(),
        human: human.into(),
        gpt: gpt.into(),
    };
    build(&tok, ckpt.latent_len(), &r).unwrap()
}

/// The targets a record trains: the labels that are not ignored.
fn trained(e: &Example) -> Vec<u32> {
    e.labels
        .iter()
        .filter(|&&l| l >= 0)
        .map(|&l| l as u32)
        .collect()
}

#[test]
fn a_target_starting_with_a_newline_merges_and_its_first_token_is_masked() {
    // C3-TRAIN.md: gpt "\nfoo" gives [77091, 271, 7975] and only
    // foo<|im_end|> is trained (upstream's mask length is 2).
    let e = one("foo", "<image>\nRepeat the text: ", "\nfoo");
    let n = e.dec_ids.len();
    assert_eq!(&e.dec_ids[n - 4..], &[77091, 271, 7975, 151645]);
    assert_eq!(trained(&e), vec![7975, 151645]);
    // Without the newline: assistant, \n, then the target.
    let e = one("foo", "<image>\nRepeat the text: ", "foo");
    assert_eq!(
        &e.dec_ids[e.dec_ids.len() - 4..],
        &[77091, 198, 7975, 151645]
    );
    // The repeat prompt is C3-SPEC's 64 ids.
    assert_eq!(e.labels.iter().take_while(|&&l| l < 0).count(), 64);
    // A human text starting with a newline merges with "user\n" the same way.
    let h = one("foo", "\n<image>", "x");
    assert_eq!(&h.dec_ids[17..20], &[151644, 872, 271]);
}

#[test]
fn control_strings_in_any_turn_stay_plain_text() {
    let s = "<img> <imgpad> </img> <|im_end|> <|im_start|> <|endoftext|> <image>";
    let e = one(s, &format!("<image>\n{}", s.replace("<image>", "")), s);
    let controls = |ids: &[u32]| ids.iter().filter(|&&i| i >= 151643).count();
    // Encoder: <img>, 32 slots, </img>; nothing else.
    assert_eq!(controls(&e.enc_ids), 34);
    // Decoder: the frame (3 × im_start, 3 × im_end) and one latent block.
    assert_eq!(controls(&e.dec_ids), 6 + 34);
}

use c3::train::load::{load_checkpoint, Selection};
use c3::train::model::{C3Net, PassOptions};
use c3::train::optim::{AdamConfig, AdamW, Schedule};
use c3::train::params::Params;
use c3::train::step::{accumulate, apply, StepLr};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;

fn net() -> (Params, C3Net) {
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    load_checkpoint(&ckpt, &Selection::all(), DType::F32, &Device::Cpu, 0).unwrap()
}

fn npy(kind: &str, name: &str) -> Vec<f32> {
    let file = format!("{kind}.{}.npy", name.replace('/', "__"));
    c3::npy::read_f32(&dir().join("expected").join(file))
        .unwrap()
        .1
}

/// `t` as the reference stored it: embedding tables only at the listed rows.
fn as_stored(exp: &Value, name: &str, t: &Tensor) -> Vec<f32> {
    let t = match exp["rows"].get(name) {
        Some(rows) => {
            let rows: Vec<u32> = ints(rows).iter().map(|&r| r as u32).collect();
            t.index_select(&Tensor::new(rows.as_slice(), t.device()).unwrap(), 0)
                .unwrap()
        }
        None => t.clone(),
    };
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// (relative L2 distance, cosine) of `a` against the reference `b`.
fn compare(a: &[f32], b: &[f32]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let (mut d, mut bb, mut aa, mut ab) = (0f64, 0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        d += (x - y) * (x - y);
        bb += y * y;
        aa += x * x;
        ab += x * y;
    }
    (
        d.sqrt() / bb.sqrt().max(1e-30),
        ab / (aa.sqrt() * bb.sqrt()).max(1e-30),
    )
}

fn check_grads(
    exp: &Value,
    p: &Params,
    grads: &BTreeMap<usize, Tensor>,
    reference: &dyn Fn(&str) -> Vec<f32>,
    label: &str,
) {
    let names: Vec<&String> = exp["tensors"].as_object().unwrap().keys().collect();
    assert_eq!(
        grads.len(),
        names.len(),
        "{label}: one gradient per trainable tensor"
    );
    let mut worst = (0f64, 1f64);
    for name in names {
        let id = p.id(name).unwrap_or_else(|| panic!("no parameter {name}"));
        let ours = as_stored(exp, name, grads.get(&id).unwrap());
        let (rel, cos) = compare(&ours, &reference(name));
        assert!(
            rel <= 1e-5 && cos >= 1.0 - 1e-8,
            "{label} {name}: rel L2 {rel:e}, cosine 1-{:e}",
            1.0 - cos
        );
        worst = (worst.0.max(rel), worst.1.min(cos));
    }
    eprintln!(
        "{label}: worst rel L2 {:e}, worst cosine 1-{:e}",
        worst.0,
        1.0 - worst.1
    );
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-30)
}

#[test]
fn four_steps_match_the_reference_gradient_for_gradient() {
    let exp = expected();
    let ex = examples();
    let (mut p, net) = net();
    let batches: Vec<Vec<&Example>> = vec![vec![&ex[0], &ex[1]], vec![&ex[2], &ex[3]]];
    let sched = Schedule::new(1e-3, 0.01, 4);
    let mut opt = AdamW::new(AdamConfig::default());
    let log = exp["log"].as_array().unwrap();
    for step in 0..4 {
        // Micro-batch 2 as one padded forward, as the reference ran it.
        let acc = accumulate(
            &net,
            &p,
            &[batches[step % 2].clone()],
            2,
            PassOptions::default(),
        )
        .unwrap();
        if step < 2 {
            let kind = format!("grad{step}");
            check_grads(&exp, &p, &acc.grads, &|n| npy(&kind, n), &kind);
        }
        let lr = sched.lr(step);
        let s = apply(
            &mut p,
            &mut opt,
            &acc,
            StepLr {
                lr,
                decoder_ratio: 1.0,
            },
            1.0,
        )
        .unwrap();
        let r = &log[step];
        assert_eq!(s.lr, r["lr"].as_f64().unwrap(), "step {step}: lr");
        for (what, ours) in [
            ("loss", s.loss),
            ("grad_norm", s.grad_norm),
            ("clip_coef", s.clip_coef),
        ] {
            let e = rel(ours, r[what].as_f64().unwrap());
            assert!(
                e <= 1e-5,
                "step {step}: {what} {ours} vs {} ({e:e})",
                r[what]
            );
        }
        eprintln!(
            "step {step}: lr {lr} loss {} grad_norm {} clip {}",
            s.loss, s.grad_norm, s.clip_coef
        );
    }
    // Parameters after 4 steps. Elements whose reference gradient is tiny
    // at both steps (below 1e-3 of the tensor's rms) may move the other way
    // (Adam's update is ~lr·sign(g)): held to Adam's bound, 2·lr a step.
    let adam_bound: f64 = (0..4).map(|s| 2.0 * sched.lr(s)).sum();
    let (mut tight, mut loose, mut worst) = (0usize, 0usize, 0f64);
    for name in exp["tensors"].as_object().unwrap().keys() {
        let id = p.id(name).unwrap();
        let ours = as_stored(&exp, name, p.get(id).master().unwrap());
        let want = npy("param", name);
        let (g0, g1) = (npy("grad0", name), npy("grad1", name));
        let rms = |g: &[f32]| {
            (g.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / g.len() as f64).sqrt()
        };
        let (r0, r1) = (rms(&g0), rms(&g1));
        for i in 0..want.len() {
            let (o, w) = (ours[i] as f64, want[i] as f64);
            let tol = 5e-5 + 1e-3 * w.abs();
            let tiny = (g0[i] as f64).abs() < 1e-3 * r0 && (g1[i] as f64).abs() < 1e-3 * r1;
            match tiny {
                false => {
                    tight += 1;
                    worst = worst.max((o - w).abs() / tol);
                    assert!((o - w).abs() <= tol, "{name}[{i}]: {o} vs {w}");
                }
                true => {
                    loose += 1;
                    assert!(
                        (o - w).abs() <= tol + adam_bound,
                        "{name}[{i}]: {o} vs {w} (tiny gradient)"
                    );
                }
            }
        }
    }
    eprintln!(
        "parameters: {tight} elements held tightly (worst at {worst:.3} of the tolerance), \
         {loose} to Adam's bound"
    );
}

#[test]
fn accumulating_two_micro_batches_gives_the_mean_of_their_gradients() {
    let exp = expected();
    let ex = examples();
    let (p, net) = net();
    let micro = vec![vec![&ex[0], &ex[1]], vec![&ex[2], &ex[3]]];
    // One record per forward: the same objective as the padded pair.
    let acc = accumulate(&net, &p, &micro, 1, PassOptions::default()).unwrap();
    let mean = |n: &str| -> Vec<f32> {
        npy("grad0", n)
            .iter()
            .zip(npy("grad1", n))
            .map(|(a, b)| (a + b) / 2.0)
            .collect()
    };
    check_grads(&exp, &p, &acc.grads, &mean, "accumulated");
    let losses: Vec<f64> = exp["log"].as_array().unwrap()[..2]
        .iter()
        .map(|r| r["loss"].as_f64().unwrap())
        .collect();
    assert!(rel(acc.loss, (losses[0] + losses[1]) / 2.0) <= 1e-5);
}
