//! Random weights at any geometry, built in memory: benchmarks run the
//! release shapes (Qwen2.5-1.5B encoder, -3B decoder) without a download.

use super::config::{C3Config, Qwen2Config};
use crate::Result;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

/// Qwen2.5-1.5B, the release encoder.
pub fn release_encoder_config() -> Qwen2Config {
    qwen2(151_936, 1536, 8960, 28, 12, 2)
}

/// Qwen2.5-3B with the C3 vocabulary, the release decoder.
pub fn release_decoder_config() -> C3Config {
    C3Config {
        llm: Qwen2Config {
            model_type: "C3".into(),
            ..qwen2(151_860, 2048, 11_008, 36, 16, 2)
        },
        latent_token_len: 32,
        contexts_compression_llm_hidden_size: 1536,
        use_im_start_end: true,
        im_patch_token: 151_859,
        im_start_token: 151_857,
        im_end_token: 151_858,
    }
}

fn qwen2(v: usize, h: usize, i: usize, layers: usize, heads: usize, kv: usize) -> Qwen2Config {
    Qwen2Config {
        vocab_size: v,
        hidden_size: h,
        intermediate_size: i,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        max_position_embeddings: 32_768,
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
        tie_word_embeddings: true,
        hidden_act: "silu".into(),
        use_sliding_window: false,
        rope_scaling: None,
        model_type: "qwen2".into(),
        head_dim: None,
        attention_bias: None,
    }
}

/// Qwen3-Embedding-0.6B, LCLM's release encoder (LCLM-SPEC §1).
pub fn lclm_release_encoder_config() -> Qwen2Config {
    Qwen2Config {
        model_type: "qwen3".into(),
        head_dim: Some(128),
        attention_bias: Some(false),
        ..qwen2(151_669, 1024, 3072, 28, 16, 8)
    }
}

/// Qwen3-4B-Instruct-2507 with the 3 memory tokens, LCLM's release decoder.
pub fn lclm_release_decoder_config() -> Qwen2Config {
    Qwen2Config {
        model_type: "qwen3".into(),
        head_dim: Some(128),
        attention_bias: Some(false),
        max_position_embeddings: 262_144,
        rope_theta: 5e6,
        ..qwen2(151_672, 2560, 9728, 36, 32, 8)
    }
}

/// Random LCLM adapter tensors (`norm`, `fc1`, `fc2`) from `enc` to `dec` wide.
pub fn random_lclm_adapter(
    enc: usize,
    dec: usize,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut m = HashMap::new();
    m.insert("norm.weight".into(), Tensor::ones(enc, dtype, device)?);
    m.insert("fc1.weight".into(), rand(&[dec, enc], dtype, device)?);
    m.insert("fc1.bias".into(), rand(&[dec], dtype, device)?);
    m.insert("fc2.weight".into(), rand(&[dec, dec], dtype, device)?);
    m.insert("fc2.bias".into(), rand(&[dec], dtype, device)?);
    Ok(m)
}

/// Uniform(-scale, scale) tensor; norms get ones so activations stay sane.
pub fn rand(shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    let scale = 0.02f32;
    Ok(Tensor::rand(-scale, scale, shape, device)?.to_dtype(dtype)?)
}

/// Random Qwen2 / Qwen3 tensors under the checkpoint names for `cfg`
/// (`model.` prefix; Qwen3: explicit head_dim, q/k norms, no biases).
pub fn random_qwen2(
    cfg: &Qwen2Config,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut m = random_qwen_outer(cfg, dtype, device)?;
    for l in 0..cfg.num_hidden_layers {
        m.extend(random_qwen_layer(cfg, l, dtype, device)?);
    }
    Ok(m)
}

/// The embedding table and final norm of [`random_qwen2`].
pub fn random_qwen_outer(
    cfg: &Qwen2Config,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let h = cfg.hidden_size;
    let mut m = HashMap::new();
    m.insert(
        "model.embed_tokens.weight".into(),
        rand(&[cfg.vocab_size, h], dtype, device)?,
    );
    m.insert("model.norm.weight".into(), Tensor::ones(h, dtype, device)?);
    Ok(m)
}

/// Layer `l`'s tensors of [`random_qwen2`] (checkpoints too large for
/// memory are written a few layers at a time).
pub fn random_qwen_layer(
    cfg: &Qwen2Config,
    l: usize,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let h = cfg.hidden_size;
    let hd = cfg.head_dim();
    let kv = cfg.num_key_value_heads * hd;
    let q = cfg.num_attention_heads * hd;
    let i = cfg.intermediate_size;
    let mut m = HashMap::new();
    let ones = |n: usize| Tensor::ones(n, dtype, device);
    let p = format!("model.layers.{l}");
    for (name, shape) in [
        ("self_attn.q_proj.weight", vec![q, h]),
        ("self_attn.k_proj.weight", vec![kv, h]),
        ("self_attn.v_proj.weight", vec![kv, h]),
        ("self_attn.o_proj.weight", vec![h, q]),
        ("mlp.gate_proj.weight", vec![i, h]),
        ("mlp.up_proj.weight", vec![i, h]),
        ("mlp.down_proj.weight", vec![h, i]),
    ] {
        m.insert(format!("{p}.{name}"), rand(&shape, dtype, device)?);
    }
    if cfg.qkv_bias() {
        for (name, n) in [("q", q), ("k", kv), ("v", kv)] {
            m.insert(
                format!("{p}.self_attn.{name}_proj.bias"),
                rand(&[n], dtype, device)?,
            );
        }
    }
    if cfg.qk_norm() {
        for name in ["q_norm", "k_norm"] {
            m.insert(format!("{p}.self_attn.{name}.weight"), ones(hd)?);
        }
    }
    m.insert(format!("{p}.input_layernorm.weight"), ones(h)?);
    m.insert(format!("{p}.post_attention_layernorm.weight"), ones(h)?);
    Ok(m)
}
