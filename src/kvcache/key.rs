//! What a block's keys and values depend on, hashed: the model side
//! ([`ModelKey`]) once, then a chain over the prompt's segments, so block
//! `i`'s key covers the frame, every earlier block and the positions they
//! sit at ([`chain`]).

use std::fmt;

use serde::Serialize;

use crate::cascade::Prompt;
use crate::model::Qwen2;

/// Bumped when the cache's hashing or file layout changes: old blocks then
/// simply miss.
pub const KEY_VERSION: &str = "c3 kv-cache key v1";

/// Everything besides the prompt that decides the keys and values a
/// decoder computes (each field a component of every block's key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelKey {
    /// Fingerprint of the model the latents belong to (the store's: encoder
    /// configuration, C3's queries and projector, LCLM's adapter).
    pub latents: String,
    /// Digest of the decoder's weight and configuration files, as stored
    /// ([`super::digest::files_digest`]).
    pub decoder: String,
    /// The decoder matrices' format: `dense`, `q8_0`, `q4k`; `q8_0+q8-activations`
    /// where the prefill rounds activations to 8 bits (`C3_PREFILL_Q8`).
    pub quant: String,
    /// The dtype the decoder computes in.
    pub dtype: String,
    /// The dtype keys and values are stored in (the compute dtype, or f16).
    pub kv_dtype: String,
    /// `cpu` (with its architecture), `cuda` or `metal`: kernels differ in
    /// their last bits between devices.
    pub device: String,
    /// The reader's prompt-frame version (`LatentReader::frame_version`).
    pub frame: String,
    /// c3's version: its kernels decide the last bits too.
    pub program: String,
}

impl ModelKey {
    /// The key of `llm` reading latents of the model `latents`, with
    /// decoder files `decoder` and keys and values stored in `kv_dtype`.
    pub fn new(
        latents: &str,
        decoder: &str,
        llm: &Qwen2,
        frame: &str,
        kv_dtype: candle_core::DType,
    ) -> Self {
        ModelKey {
            latents: latents.to_string(),
            decoder: decoder.to_string(),
            quant: match llm.quant() {
                None => "dense".into(),
                // 8-bit activations in the prefill round more than a kernel's
                // last bits: a prefix stored with them is another prefix.
                Some(q @ crate::model::Quant::Q8_0) if crate::model::quant::prefill_q8() => {
                    format!("{q}+q8-activations")
                }
                Some(q) => q.to_string(),
            },
            dtype: format!("{:?}", llm.dtype()).to_lowercase(),
            kv_dtype: format!("{kv_dtype:?}").to_lowercase(),
            device: device_class(llm.device()),
            frame: frame.to_string(),
            program: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// The chain's root: every field, length-prefixed.
    fn root(&self) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        for field in [
            KEY_VERSION,
            &self.latents,
            &self.decoder,
            &self.quant,
            &self.dtype,
            &self.kv_dtype,
            &self.device,
            &self.frame,
            &self.program,
        ] {
            h.update(&(field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        h.finalize()
    }
}

/// The device's class as a key component.
pub fn device_class(d: &candle_core::Device) -> String {
    match d {
        candle_core::Device::Cpu => format!("cpu-{}", std::env::consts::ARCH),
        candle_core::Device::Cuda(_) => "cuda".into(),
        candle_core::Device::Metal(_) => "metal".into(),
    }
}

/// One block's key: 32 bytes of blake3 over its whole prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey(pub [u8; 32]);

impl BlockKey {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for BlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockKey({})", &self.hex()[..16])
    }
}

/// The chain keys of `prompt`'s segments ([`Prompt::segments`]) under
/// `model`: key `i` hashes key `i - 1` (the root for the first), the
/// segment's position range, its ids (the frame ids before the block and
/// the block's slot ids), where its slots start and end, and `content[i]`,
/// the digest of the stored latents that fill them. Two prompts share key
/// `i` exactly when everything up to the end of block `i` is the same, at
/// the same positions.
pub fn chain(model: &ModelKey, prompt: &Prompt, content: &[[u8; 32]]) -> Vec<BlockKey> {
    let mut prev = model.root();
    prompt
        .segments()
        .into_iter()
        .zip(&prompt.latent_starts)
        .zip(content)
        .map(|((seg, &slot), digest)| {
            let mut h = blake3::Hasher::new();
            h.update(prev.as_bytes());
            h.update(&(seg.start as u64).to_le_bytes());
            h.update(&(seg.end as u64).to_le_bytes());
            h.update(&(slot as u64).to_le_bytes());
            for id in &prompt.ids[seg.clone()] {
                h.update(&id.to_le_bytes());
            }
            h.update(digest);
            prev = h.finalize();
            BlockKey(*prev.as_bytes())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelKey {
        ModelKey {
            latents: "fp".into(),
            decoder: "dec".into(),
            quant: "dense".into(),
            dtype: "f32".into(),
            kv_dtype: "f32".into(),
            device: "cpu-x86_64".into(),
            frame: "c3-mpt-img/1".into(),
            program: "0".into(),
        }
    }

    fn prompt(ids: Vec<u32>, starts: Vec<usize>, n: usize) -> Prompt {
        Prompt {
            latent_lens: vec![n; starts.len()],
            ids,
            latent_starts: starts,
        }
    }

    #[test]
    fn a_shared_prefix_shares_keys_and_nothing_after_a_difference_does() {
        let a = prompt(vec![1, 2, 9, 9, 3, 9, 9, 7, 7], vec![2, 5], 2);
        // The same two blocks, another question after them.
        let b = prompt(vec![1, 2, 9, 9, 3, 9, 9, 8], vec![2, 5], 2);
        let c = [[1u8; 32], [2u8; 32]];
        assert_eq!(chain(&model(), &a, &c), chain(&model(), &b, &c));
        // Another first chunk: both keys change.
        let ka = chain(&model(), &a, &c);
        let kc = chain(&model(), &a, &[[5u8; 32], [2u8; 32]]);
        assert!(ka[0] != kc[0] && ka[1] != kc[1]);
        // Another second chunk: the first key stays.
        let kd = chain(&model(), &a, &[[1u8; 32], [6u8; 32]]);
        assert!(ka[0] == kd[0] && ka[1] != kd[1]);
        // One more frame id before the blocks shifts every position.
        let e = prompt(vec![1, 1, 2, 9, 9, 3, 9, 9, 7], vec![3, 6], 2);
        let ke = chain(&model(), &e, &c);
        assert!(ka[0] != ke[0] && ka[1] != ke[1]);
    }

    #[test]
    fn every_model_component_changes_every_key() {
        let p = prompt(vec![1, 9, 9, 4], vec![1], 2);
        let c = [[3u8; 32]];
        let base = chain(&model(), &p, &c);
        let edits: [fn(&mut ModelKey); 8] = [
            |m| m.latents.push('x'),
            |m| m.decoder.push('x'),
            |m| m.quant = "q8_0".into(),
            |m| m.dtype = "bf16".into(),
            |m| m.kv_dtype = "f16".into(),
            |m| m.device = "cuda".into(),
            |m| m.frame = "c3-mpt-img/2".into(),
            |m| m.program.push('x'),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut m = model();
            edit(&mut m);
            assert_ne!(chain(&m, &p, &c), base, "component {i}");
        }
    }
}
