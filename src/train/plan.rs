//! What a run will hold in memory, from the configs alone (no weights
//! read): parameter counts per part and the plan of weights, gradients,
//! moments and activations, checked against the device before a run starts
//! (`c3 train --dry-run` prints it).

use super::load::{LoraConfig, Selection};
use super::params::Part;
use crate::model::config::Qwen2Config;
use candle_core::DType;

/// Parameters of one part and how many of them train.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartCount {
    pub part: Part,
    pub params: u64,
    pub trainable: u64,
}

/// Bytes a run holds at its peak, by kind.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct MemoryPlan {
    /// Master (f32) copies of what trains, compute copies of everything.
    pub weights: u64,
    /// f32 gradient sums of what trains, plus the largest one in flight.
    pub gradients: u64,
    /// AdamW's two f32 moments of what trains.
    pub moments: u64,
    /// Saved activations of one forward (both stacks), the loss slices and
    /// one block's backward temporaries.
    pub activations: u64,
    pub total: u64,
}

/// What the plan depends on besides the configs.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub encoder: &'a Qwen2Config,
    pub decoder: &'a Qwen2Config,
    pub latent_len: usize,
    pub sel: &'a Selection,
    pub compute: DType,
    /// Records per forward pass.
    pub pack: usize,
    /// Longest encoder and decoder sequences.
    pub enc_len: usize,
    pub dec_len: usize,
    /// Label rows of the largest forward.
    pub label_rows: usize,
    pub recompute: bool,
}

/// (parameters, LoRA-adaptable (in, out) pairs) of a Qwen2 stack.
fn stack_params(c: &Qwen2Config) -> (u64, u64, Vec<(u64, u64)>) {
    let h = c.hidden_size as u64;
    let hd = c.head_dim() as u64;
    let qo = c.num_attention_heads as u64 * hd;
    let kv = c.num_key_value_heads as u64 * hd;
    let i = c.intermediate_size as u64;
    let bias = if c.qkv_bias() { qo + 2 * kv } else { 0 };
    let layer = h * qo + 2 * h * kv + bias + qo * h + 3 * h * i + 2 * h;
    let embed = c.vocab_size as u64 * h;
    let linears = vec![(h, qo), (h, kv), (h, kv), (qo, h), (h, i), (h, i), (i, h)];
    (
        embed + c.num_hidden_layers as u64 * layer + h,
        embed,
        linears,
    )
}

fn lora_params(c: &Qwen2Config, lora: &LoraConfig) -> u64 {
    let (_, _, linears) = stack_params(c);
    let names = ["q", "k", "v", "o", "gate", "up", "down"];
    let per_layer: u64 = linears
        .iter()
        .zip(names)
        .filter(|(_, n)| lora.targets.iter().any(|t| t == n))
        .map(|((i, o), _)| lora.rank as u64 * (i + o))
        .sum();
    per_layer * c.num_hidden_layers as u64
}

/// Parameters per part (`lm_head`: the decoder has its own output matrix).
pub fn count(input: &PlanInput, lm_head: bool) -> Vec<PartCount> {
    let (enc, _, _) = stack_params(input.encoder);
    let (mut dec, _, _) = stack_params(input.decoder);
    if lm_head {
        dec += input.decoder.vocab_size as u64 * input.decoder.hidden_size as u64;
    }
    let he = input.encoder.hidden_size as u64;
    let hd = input.decoder.hidden_size as u64;
    let sizes = [
        (Part::Encoder, enc),
        (Part::Queries, input.latent_len as u64 * he),
        (Part::Projector, hd * he + hd),
        (Part::Decoder, dec),
    ];
    sizes
        .into_iter()
        .map(|(part, params)| {
            let on = input.sel.parts.contains(&part);
            let trainable = match (&input.sel.lora, part, on) {
                (_, _, false) => 0,
                (Some(l), Part::Encoder, _) => lora_params(input.encoder, l),
                (Some(l), Part::Decoder, _) => lora_params(input.decoder, l),
                _ => params,
            };
            PartCount {
                part,
                params,
                trainable,
            }
        })
        .collect()
}

/// Saved bytes per token of one block, and its transient backward bytes
/// per token, at sequence length `t`.
fn block_bytes(c: &Qwen2Config, bd: u64, t: u64) -> (u64, u64) {
    let h = c.hidden_size as u64;
    let hd = c.head_dim() as u64;
    let heads = c.num_attention_heads as u64;
    let qo = heads * hd;
    let kv = c.num_key_value_heads as u64 * hd;
    let i = c.intermediate_size as u64;
    // n1, q, k, v, attention output, n2, gate, up, act (compute dtype);
    // two normalised copies and the attention probabilities (f32).
    let saved = bd * (h + qo + 2 * kv + qo + h + 3 * i) + 4 * (2 * h) + 4 * heads * t;
    // Scores, and the backward's dP and dS, while one block runs.
    let transient = 3 * 4 * heads * t + 2 * bd * (h + i);
    (saved, transient)
}

/// Activation bytes of one stack over `tokens` positions at length `t`.
fn stack_activations(c: &Qwen2Config, bd: u64, tokens: u64, t: u64, recompute: bool) -> u64 {
    let (saved, transient) = block_bytes(c, bd, t);
    let h = c.hidden_size as u64;
    let layers = c.num_hidden_layers as u64;
    let kept = match recompute {
        true => layers * h * bd + saved,
        false => layers * (saved + h * bd),
    };
    tokens * (kept + transient)
}

/// The memory plan.
pub fn memory(input: &PlanInput, lm_head: bool) -> MemoryPlan {
    let bd = input.compute.size_in_bytes() as u64;
    let counts = count(input, lm_head);
    let trainable: u64 = counts.iter().map(|c| c.trainable).sum();
    // Frozen tensors exist once, in the compute dtype; trained ones as f32
    // masters and (when computing in another dtype) a compute copy. LoRA
    // adapters are parameters beside the frozen base weights.
    let mut frozen = 0;
    for c in &counts {
        let adapted = input.sel.lora.is_some() && matches!(c.part, Part::Encoder | Part::Decoder);
        frozen += if adapted {
            c.params
        } else {
            c.params - c.trainable
        };
    }
    let copy = if bd == 4 { 0 } else { bd };
    let weights = frozen * bd + trainable * (4 + copy);
    let largest = input.decoder.vocab_size as u64 * input.decoder.hidden_size as u64;
    let gradients = trainable * 4
        + if trainable > 0 {
            largest.min(trainable) * 4
        } else {
            0
        };
    let moments = trainable * 8;
    let pack = input.pack.max(1) as u64;
    let (te, td) = (input.enc_len as u64, input.dec_len as u64);
    let enc_trains =
        input.sel.parts.contains(&Part::Encoder) || input.sel.parts.contains(&Part::Queries);
    let enc = match enc_trains {
        true => stack_activations(input.encoder, bd, pack * te, te, input.recompute),
        // Frozen encoder side: one block's worth in flight, nothing kept.
        false => pack * te * block_bytes(input.encoder, bd, te).0,
    };
    let dec = stack_activations(input.decoder, bd, pack * td, td, input.recompute);
    let v = input.decoder.vocab_size as u64;
    let slice = ((256u64 << 20) / (4 * v))
        .max(16)
        .min(input.label_rows.max(1) as u64);
    let loss = 5 * slice * v * 4 + 2 * v * input.decoder.hidden_size as u64 * 4;
    let activations = enc + dec + loss;
    MemoryPlan {
        weights,
        gradients,
        moments,
        activations,
        total: weights + gradients + moments + activations,
    }
}

/// Bytes as GiB with one decimal.
pub fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Memory the device offers: on the CPU, `MemAvailable`; on a GPU, the
/// total nvidia-smi reports for GPU 0; None when it cannot be told.
pub fn capacity(cuda: bool) -> Option<u64> {
    if cuda {
        let out = std::process::Command::new("nvidia-smi")
            .args([
                "--query-gpu=memory.total",
                "--format=csv,noheader,nounits",
                "-i",
                "0",
            ])
            .output()
            .ok()?;
        let mib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        return Some(mib << 20);
    }
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb << 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synthetic::{release_decoder_config, release_encoder_config};

    #[test]
    fn release_counts_match_the_known_sizes() {
        let (enc, dec) = (release_encoder_config(), release_decoder_config());
        let sel = Selection::all();
        let input = PlanInput {
            encoder: &enc,
            decoder: &dec.llm,
            latent_len: 32,
            sel: &sel,
            compute: DType::F32,
            pack: 1,
            enc_len: 1034,
            dec_len: 1100,
            label_rows: 1000,
            recompute: false,
        };
        let c = count(&input, false);
        // Qwen2.5-1.5B: 1.54 B parameters; Qwen2.5-3B with the C3 vocabulary: 3.09 B.
        assert!(
            (1_540_000_000..1_550_000_000).contains(&c[0].params),
            "{}",
            c[0].params
        );
        assert!(
            (3_080_000_000..3_090_000_000).contains(&c[3].params),
            "{}",
            c[3].params
        );
        assert_eq!(c[1].params, 32 * 1536);
        let m = memory(&input, false);
        // f32 weights + gradients + two moments of 4.6 B parameters: ~69 GiB before activations.
        assert!(m.weights + m.gradients + m.moments > 68 << 30);
        let lora = Selection {
            lora: Some(LoraConfig {
                rank: 8,
                alpha: 16.0,
                targets: ["q", "v"].map(String::from).to_vec(),
            }),
            ..Selection::all()
        };
        let l = count(
            &PlanInput {
                sel: &lora,
                ..input.clone()
            },
            false,
        );
        // q and v: rank × (in + out) per layer.
        assert_eq!(l[0].trainable, 28 * 8 * ((1536 + 1536) + (1536 + 256)));
    }
}
