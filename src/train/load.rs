//! Building the trainable C3 model from a checkpoint: every tensor under its
//! released name, the chosen parts trainable (or LoRA adapters on them).

use super::model::C3Net;
use super::params::{Params, Part};
use super::rng::Rng;
use super::stack::{Adapter, Block, Geometry, Lin, Stack};
use crate::cascade::c3::checkpoint::{C3Checkpoint, PROJ_BIAS, PROJ_WEIGHT, QUERY_TENSOR};
use crate::cascade::c3::ENCODER_DIR;
use crate::model::config::Qwen2Config;
use crate::model::weights::Weights;
use crate::tokenize::special;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeSet;

/// The linear layers LoRA may adapt, by their short names.
pub const LORA_TARGETS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// LoRA settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    /// Short names from [`LORA_TARGETS`].
    pub targets: Vec<String>,
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    fn adapts(&self, suffix: &str) -> bool {
        let short = suffix
            .rsplit('.')
            .next()
            .unwrap_or(suffix)
            .trim_end_matches("_proj");
        self.targets.iter().any(|t| t == short)
    }
}

/// What trains.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub parts: BTreeSet<Part>,
    /// With LoRA, the encoder's and decoder's own tensors stay frozen and
    /// adapters on their linear layers train instead.
    pub lora: Option<LoraConfig>,
}

impl Selection {
    pub fn all() -> Self {
        Self {
            parts: Part::ALL.into_iter().collect(),
            lora: None,
        }
    }

    /// Whether the tensors of `part` themselves train.
    fn full(&self, part: Part) -> bool {
        self.parts.contains(&part)
            && !(self.lora.is_some() && matches!(part, Part::Encoder | Part::Decoder))
    }

    /// Whether `part` gets LoRA adapters.
    fn adapted(&self, part: Part) -> Option<&LoraConfig> {
        match part {
            Part::Encoder | Part::Decoder if self.parts.contains(&part) => self.lora.as_ref(),
            _ => None,
        }
    }
}

/// A source of tensors by name with their expected shapes.
pub trait TensorSource {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor>;
    fn has(&self, name: &str) -> bool;
}

impl TensorSource for Weights {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get(name, shape)
    }
    fn has(&self, name: &str) -> bool {
        self.contains(name)
    }
}

/// Everything needed to build the net, without files (tests build tiny
/// random models this way).
pub struct NetSpec<'a> {
    pub encoder: &'a Qwen2Config,
    pub decoder: &'a Qwen2Config,
    pub latent_len: usize,
}

fn check_supported(cfg: &Qwen2Config, what: &str) -> Result<()> {
    if cfg.qk_norm() {
        return Err(Error::Input(format!(
            "training supports Qwen2 stacks; the {what} is `{}` (q/k norms)",
            cfg.model_type
        )));
    }
    Ok(())
}

/// Loads the stack under `prefix` (`model.`) of `src`, naming its
/// parameters `dir_prefix` + checkpoint name.
#[allow(clippy::too_many_arguments)]
fn load_stack(
    p: &mut Params,
    src: &dyn TensorSource,
    cfg: &Qwen2Config,
    dir_prefix: &str,
    part: Part,
    sel: &Selection,
    rng: &mut Rng,
) -> Result<Stack> {
    let h = cfg.hidden_size;
    let hd = cfg.head_dim();
    let qo = cfg.num_attention_heads * hd;
    let kv = cfg.num_key_value_heads * hd;
    let i = cfg.intermediate_size;
    let train = sel.full(part);
    let lora = sel.adapted(part);
    let add = |p: &mut Params, name: &str, shape: &[usize]| -> Result<usize> {
        let t = src.tensor(name, shape)?;
        Ok(p.add(&format!("{dir_prefix}{name}"), part, t, train, false)?)
    };
    let embed = add(p, "model.embed_tokens.weight", &[cfg.vocab_size, h])?;
    let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
    for l in 0..cfg.num_hidden_layers {
        let pre = format!("model.layers.{l}");
        let lin = |p: &mut Params, suffix: &str, out: usize, inp: usize, bias: bool| {
            let w = add(p, &format!("{pre}.{suffix}.weight"), &[out, inp])?;
            let b = match bias {
                true => Some(add(p, &format!("{pre}.{suffix}.bias"), &[out])?),
                false => None,
            };
            Ok::<_, Error>(Lin {
                w,
                b,
                adapter: None,
            })
        };
        let bias = cfg.qkv_bias();
        let input_norm = add(p, &format!("{pre}.input_layernorm.weight"), &[h])?;
        let q = lin(p, "self_attn.q_proj", qo, h, bias)?;
        let k = lin(p, "self_attn.k_proj", kv, h, bias)?;
        let v = lin(p, "self_attn.v_proj", kv, h, bias)?;
        let o = lin(p, "self_attn.o_proj", h, qo, false)?;
        let post_norm = add(p, &format!("{pre}.post_attention_layernorm.weight"), &[h])?;
        let gate = lin(p, "mlp.gate_proj", i, h, false)?;
        let up = lin(p, "mlp.up_proj", i, h, false)?;
        let down = lin(p, "mlp.down_proj", h, i, false)?;
        let mut block = Block {
            input_norm,
            q,
            k,
            v,
            o,
            post_norm,
            gate,
            up,
            down,
        };
        if let Some(cfg) = lora {
            for (suffix, lin) in block.linears_mut() {
                if cfg.adapts(suffix) {
                    let name = format!("{dir_prefix}{pre}.{suffix}");
                    lin.adapter = Some(add_adapter(p, &name, lin.w, part, cfg, rng)?);
                }
            }
        }
        blocks.push(block);
    }
    let norm = add(p, "model.norm.weight", &[h])?;
    Ok(Stack {
        geom: Geometry::of(cfg),
        embed,
        blocks,
        norm,
    })
}

/// A rank-r adapter for the weight `w` [out, in]: A [r, in] drawn as peft
/// draws it (Kaiming-uniform with a = √5, i.e. U(±1/√in)), B [out, r] zero,
/// so the adapted layer starts equal to the base.
fn add_adapter(
    p: &mut Params,
    name: &str,
    w: usize,
    part: Part,
    cfg: &LoraConfig,
    rng: &mut Rng,
) -> Result<Adapter> {
    let (out, inp) = (p.get(w).shape[0], p.get(w).shape[1]);
    let bound = 1.0 / (inp as f64).sqrt();
    let a: Vec<f32> = (0..cfg.rank * inp)
        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
        .collect();
    let dev = p.device().clone();
    let a = Tensor::from_vec(a, (cfg.rank, inp), &dev)?;
    let b = Tensor::zeros((out, cfg.rank), DType::F32, &dev)?;
    let a = p.add(&format!("{name}.lora_A.weight"), part, a, true, true)?;
    let b = p.add(&format!("{name}.lora_B.weight"), part, b, true, true)?;
    p.register_adapter(name, a, b, cfg.scale());
    Ok(Adapter {
        a,
        b,
        scale: cfg.scale(),
    })
}

/// Builds the parameters and the net from tensor sources: `enc` holds the
/// encoder (`model.…`), `dec` the decoder, `Q` and the projector.
#[allow(clippy::too_many_arguments)]
pub fn build_net(
    spec: &NetSpec,
    enc: &dyn TensorSource,
    dec: &dyn TensorSource,
    sel: &Selection,
    dtype: DType,
    device: &Device,
    seed: u64,
) -> Result<(Params, C3Net)> {
    check_supported(spec.encoder, "encoder")?;
    check_supported(spec.decoder, "decoder")?;
    // A step frees and reallocates buffers the size of the largest
    // parameters and logit slices: keep them in the process.
    crate::runtime::keep_large_buffers();
    let mut rng = Rng::new(seed, "lora");
    let mut p = Params::new(dtype, device);
    let enc_prefix = format!("{ENCODER_DIR}/");
    let enc_stack = load_stack(
        &mut p,
        enc,
        spec.encoder,
        &enc_prefix,
        Part::Encoder,
        sel,
        &mut rng,
    )?;
    let (he, hd) = (spec.encoder.hidden_size, spec.decoder.hidden_size);
    let q = dec.tensor(QUERY_TENSOR, &[spec.latent_len, he])?;
    let query = p.add(
        QUERY_TENSOR,
        Part::Queries,
        q,
        sel.full(Part::Queries),
        false,
    )?;
    let pw = dec.tensor(PROJ_WEIGHT, &[hd, he])?;
    let proj_w = p.add(
        PROJ_WEIGHT,
        Part::Projector,
        pw,
        sel.full(Part::Projector),
        false,
    )?;
    let pb = dec.tensor(PROJ_BIAS, &[hd])?;
    let proj_b = p.add(
        PROJ_BIAS,
        Part::Projector,
        pb,
        sel.full(Part::Projector),
        false,
    )?;
    let dec_stack = load_stack(&mut p, dec, spec.decoder, "", Part::Decoder, sel, &mut rng)?;
    let out = if dec.has("lm_head.weight") {
        let t = dec.tensor("lm_head.weight", &[spec.decoder.vocab_size, hd])?;
        p.add(
            "lm_head.weight",
            Part::Decoder,
            t,
            sel.full(Part::Decoder),
            false,
        )?
    } else if spec.decoder.tie_word_embeddings {
        dec_stack.embed
    } else {
        return Err(Error::Input(
            "the decoder has no `lm_head.weight` and `tie_word_embeddings` is false".into(),
        ));
    };
    let pad_id = match (special::ENDOFTEXT as usize)
        < spec.decoder.vocab_size.min(spec.encoder.vocab_size)
    {
        true => special::ENDOFTEXT,
        false => 0,
    };
    let net = C3Net {
        enc: enc_stack,
        dec: dec_stack,
        query,
        proj_w,
        proj_b,
        out,
        latent_len: spec.latent_len,
        pad_id,
    };
    Ok((p, net))
}

/// Builds the net from a C3 checkpoint directory. Weights are read as f32
/// (the release's bf16 upcast exactly) and every tensor is checked for
/// shape and NaN/Inf, naming the tensor at fault.
pub fn load_checkpoint(
    ckpt: &C3Checkpoint,
    sel: &Selection,
    dtype: DType,
    device: &Device,
    seed: u64,
) -> Result<(Params, C3Net)> {
    let dec_w = ckpt.decoder_weights(DType::F32, device)?;
    let enc_w = ckpt.encoder_weights(DType::F32, device)?;
    let spec = NetSpec {
        encoder: &ckpt.encoder_config,
        decoder: &ckpt.config.llm,
        latent_len: ckpt.latent_len(),
    };
    build_net(&spec, &enc_w, &dec_w, sel, dtype, device, seed)
}
