//! LoRA: adapters start as a no-op, and the merged checkpoint computes what
//! base + adapter computed.

use crate::common::golden_model;
use crate::golden_examples;
use crate::support::*;
use c3::cascade::c3::C3Checkpoint;
use c3::train::example::Example;
use c3::train::load::{load_checkpoint, LoraConfig, Selection};
use c3::train::params::Part;
use c3::train::save::{save_checkpoint, SaveOptions};
use candle_core::{DType, Device, Tensor};

fn lora_selection() -> Selection {
    Selection {
        parts: Part::ALL.into_iter().collect(),
        lora: Some(LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets: ["q", "k", "v", "o", "gate", "up", "down"]
                .map(String::from)
                .to_vec(),
        }),
    }
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn adapters_start_as_a_no_op_and_merge_into_the_same_logits() {
    let ckpt = C3Checkpoint::open(&golden_model()).unwrap();
    let ex = golden_examples();
    let batch: Vec<&Example> = vec![&ex[1], &ex[2]];
    let (base_p, base) =
        load_checkpoint(&ckpt, &Selection::all(), DType::F32, &Device::Cpu, 0).unwrap();
    let (mut p, net) =
        load_checkpoint(&ckpt, &lora_selection(), DType::F32, &Device::Cpu, 0).unwrap();
    // B = 0: the adapted model is the base model, bit for bit.
    let (l0, l1) = (
        base.label_logits(&base_p, &batch).unwrap(),
        net.label_logits(&p, &batch).unwrap(),
    );
    assert_eq!(values(&l0), values(&l1));
    assert_eq!(
        base.evaluate(&base_p, &batch).unwrap(),
        net.evaluate(&p, &batch).unwrap()
    );
    // Only adapters, Q and the projector train.
    for id in p.trainable_ids() {
        let q = p.get(id);
        assert!(
            q.adapter || matches!(q.part, Part::Queries | Part::Projector),
            "{}",
            q.name
        );
    }

    // Give every B values, then merge on save and reload as a plain model.
    let mut x: u64 = 12345;
    let ids: Vec<usize> = p
        .trainable_ids()
        .into_iter()
        .filter(|&i| p.get(i).name.ends_with("lora_B.weight"))
        .collect();
    for id in ids {
        let n = p.get(id).elem_count();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
            })
            .collect();
        let shape = p.get(id).shape.clone();
        p.set_master(id, Tensor::from_vec(v, shape, &Device::Cpu).unwrap())
            .unwrap();
    }
    let adapted = net.label_logits(&p, &batch).unwrap();
    assert!(
        max_abs(&(&adapted - &l0).unwrap()) > 1e-3,
        "the adapters change nothing"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let opts = SaveOptions {
        dtype: DType::F32,
        lora_keep: true,
    };
    save_checkpoint(&ckpt, &p, lora_selection().lora.as_ref(), &out, opts).unwrap();
    let merged_ckpt = C3Checkpoint::open(&out).unwrap();
    let (mp, merged) =
        load_checkpoint(&merged_ckpt, &Selection::all(), DType::F32, &Device::Cpu, 0).unwrap();
    let m = merged.label_logits(&mp, &batch).unwrap();
    let err = max_abs(&(&m - &adapted).unwrap()) / max_abs(&adapted);
    assert!(err < 1e-5, "merged logits differ by {err:e} (relative)");
    // The adapters alone, beside the model.
    let a = layout(&out.join("lora/adapter_model.safetensors"));
    assert!(a
        .iter()
        .any(|(n, _, s)| n == "model.layers.0.self_attn.q_proj.lora_A.weight" && s == &[4, 64]));
    assert!(a
        .iter()
        .any(|(n, _, s)| n == "llm1/model.layers.1.mlp.down_proj.lora_B.weight" && s == &[16, 4]));
    // Tensors no adapter touches are the starting ones, bit for bit.
    let (s, t) = (
        tensors(&golden_model().join("model.safetensors")),
        tensors(&out.join("model.safetensors")),
    );
    for name in [
        "model.embed_tokens.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.1.self_attn.q_proj.bias",
    ] {
        assert_eq!(values(&s[name]), values(&t[name]), "{name}");
    }
}

#[test]
fn lora_training_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write(tmp.path(), "d.jsonl", &records(2));
    let out = tmp.path().join("out");
    let run = train(
        tmp.path(),
        &[
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "2",
            "--micro-batch",
            "2",
            "--grad-accum",
            "1",
            "--lr",
            "1e-2",
            "--train",
            "decoder",
            "--lora-rank",
            "2",
            "--lora-targets",
            "q,v",
            "--lora-keep",
            "--save-every",
            "0",
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let (s, t) = (
        tensors(&golden_model().join("model.safetensors")),
        tensors(&out.join("model.safetensors")),
    );
    for (name, a) in &s {
        let same = values(a) == values(&t[name]);
        let adapted = name.contains("q_proj.weight") || name.contains("v_proj.weight");
        assert_eq!(same, !adapted, "{name}");
    }
    assert!(out.join("lora/adapter_config.json").is_file());
}
