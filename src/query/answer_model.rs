//! A plain Qwen causal LM for `--mode text --answer-model DIR|FILE.gguf`: it
//! reads the chunks' stored text, so any chat checkpoint (e.g.
//! Qwen2.5-3B-Instruct, or its q4_k_m GGUF) can answer from the same
//! selection the latent path uses. Safetensors directories run on c3's own
//! forward; GGUF files on candle-transformers' quantized models.

use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, IndexOp};

use super::stream::AnswerStream;
use crate::generate::clean_text;
use crate::generate::token_loop::{choose_ids, generate_ids};
use crate::generate::{check_room, GenOptions, Generation, StopReason};
use crate::model::config::{read_qwen_config, QWEN2, QWEN3};
use crate::model::gguf::GgufLm;
use crate::model::weights::Weights;
use crate::model::Qwen2;
use crate::tokenize::{C3Tokenizer, HfTokenizer, StreamDecoder, TokenBytes};
use crate::{Error, Result};

/// The checkpoint's tokenizer: Qwen's `qwen.tiktoken`, or a `tokenizer.json`.
enum Tok {
    Tiktoken(Box<C3Tokenizer>),
    Hf(Box<HfTokenizer>),
}

impl Tok {
    /// Id of a control token by its spelling.
    fn control_id(&self, s: &str) -> Option<u32> {
        match self {
            Tok::Hf(t) => t.added_id(s),
            Tok::Tiktoken(_) => {
                use crate::tokenize::special::*;
                [ENDOFTEXT, IM_START, IM_END]
                    .into_iter()
                    .find(|&i| name(i) == Some(s))
            }
        }
    }

    fn bytes(&self) -> &dyn TokenBytes {
        match self {
            Tok::Tiktoken(t) => &**t,
            Tok::Hf(t) => &**t,
        }
    }
}

enum Backend {
    /// c3's own Qwen2 / Qwen3 forward on safetensors weights.
    Dense(Box<Qwen2>),
    /// candle-transformers' quantized Qwen2 / Qwen3 on a GGUF file (its KV
    /// cache lives in the model, hence the lock).
    Gguf(Box<Mutex<GgufLm>>, Device),
}

/// A plain Qwen chat model and its tokenizer.
pub struct AnswerModel {
    backend: Backend,
    tok: Tok,
    /// `<|im_start|>`, `<|im_end|>`, `<|endoftext|>` in this vocabulary.
    pub(crate) im_start: u32,
    pub(crate) im_end: u32,
    endoftext: u32,
    /// `<think>`, `</think>` when the chat template opens every answer with
    /// an empty think block (Qwen3 with thinking off).
    pub(crate) empty_think: Option<(u32, u32)>,
    max_positions: usize,
    vocab: usize,
}

fn ckpt_err(dir: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: dir.to_path_buf(),
        msg: msg.into(),
    }
}

impl AnswerModel {
    /// Loads a checkpoint directory, or a `.gguf` file.
    pub fn load(path: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let is_gguf = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        if is_gguf {
            Self::load_gguf(path, device)
        } else {
            Self::load_dir(path, dtype, device)
        }
    }

    /// A GGUF file: weights, tokenizer (`tokenizer.ggml.*`) and chat
    /// template (`tokenizer.chat_template`; ChatML when absent).
    pub fn load_gguf(path: &Path, device: &Device) -> Result<Self> {
        if !path.is_file() {
            return Err(ckpt_err(path, "no such GGUF file"));
        }
        let (lm, header) = GgufLm::open(path, device)?;
        let tok = crate::tokenize::gguf::from_gguf_metadata(&header.metadata, path)?;
        let template = header.chat_template.as_deref().unwrap_or("");
        // c3 builds ChatML prompts itself (no template engine): refuse a
        // template of another shape rather than prompt the model wrongly.
        if !template.is_empty() && !template.contains("<|im_start|>") {
            return Err(ckpt_err(
                path,
                "tokenizer.chat_template is not ChatML (no <|im_start|>): c3 prompts Qwen \
                 chat models in ChatML only",
            ));
        }
        let think = |s: &str| tok.added_id(s);
        let empty_think = match (think("<think>"), think("</think>")) {
            (Some(a), Some(b)) if template.contains("enable_thinking") => Some((a, b)),
            _ => None,
        };
        let (max_positions, vocab) = (lm.context_length, lm.vocab);
        Self::finish(
            path,
            Backend::Gguf(Box::new(Mutex::new(lm)), device.clone()),
            Tok::Hf(Box::new(tok)),
            empty_think,
            max_positions,
            vocab,
        )
    }

    /// A directory: `config.json` (model_type "qwen2" or "qwen3"),
    /// safetensors, and `tokenizer.json` or `qwen.tiktoken`.
    pub fn load_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ckpt_err(
                dir,
                "not a directory (expected a Qwen2 checkpoint)",
            ));
        }
        let cfg = read_qwen_config(&dir.join("config.json"), &[QWEN2, QWEN3])?;
        let w = Weights::open(dir, dtype, device)?;
        let llm = Qwen2::load(&w, &cfg, device, dtype)?;
        let tok = if dir.join("tokenizer.json").is_file() {
            Tok::Hf(Box::new(HfTokenizer::from_file(
                &dir.join("tokenizer.json"),
            )?))
        } else if dir.join("qwen.tiktoken").is_file() {
            Tok::Tiktoken(Box::new(C3Tokenizer::from_tiktoken_file(
                &dir.join("qwen.tiktoken"),
            )?))
        } else {
            return Err(ckpt_err(dir, "no tokenizer.json or qwen.tiktoken"));
        };
        let (max_positions, vocab) = (cfg.max_position_embeddings, cfg.vocab_size);
        Self::finish(
            dir,
            Backend::Dense(Box::new(llm)),
            tok,
            None,
            max_positions,
            vocab,
        )
    }

    fn finish(
        path: &Path,
        backend: Backend,
        tok: Tok,
        empty_think: Option<(u32, u32)>,
        max_positions: usize,
        vocab: usize,
    ) -> Result<Self> {
        let id = |s: &str| tok.control_id(s);
        let need = |s: &str| {
            id(s).ok_or_else(|| {
                ckpt_err(
                    path,
                    format!("the tokenizer has no {s} (need a Qwen chat tokenizer)"),
                )
            })
        };
        Ok(Self {
            im_start: need("<|im_start|>")?,
            im_end: need("<|im_end|>")?,
            endoftext: need("<|endoftext|>")?,
            backend,
            tok,
            empty_think,
            max_positions,
            vocab,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// The answer opens with an empty think block (a Qwen3 chat template
    /// with thinking off).
    pub fn opens_with_empty_think(&self) -> bool {
        self.empty_think.is_some()
    }

    /// `gguf` or `safetensors`: which code runs the model.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Dense(_) => "safetensors",
            Backend::Gguf(..) => "gguf",
        }
    }

    /// The logits after `prompt` (for checks against another path to the
    /// same weights).
    pub fn logits_after(&self, prompt: &[u32]) -> Result<Vec<f32>> {
        if prompt.is_empty() {
            return Err(Error::Input("empty prompt".into()));
        }
        let mut l = match &self.backend {
            Backend::Dense(llm) => {
                let x = llm.embed(prompt)?.unsqueeze(0)?;
                let h = llm.forward_tail(&x, None, 1)?;
                let last = h.i((0, 0))?.unsqueeze(0)?;
                llm.logits(&last)?.squeeze(0)?.to_vec1::<f32>()?
            }
            Backend::Gguf(lm, device) => {
                let mut lm = lm.lock().unwrap_or_else(|p| p.into_inner());
                lm.reset();
                lm.forward(prompt, 0, device)?
            }
        };
        l.truncate(self.vocab);
        Ok(l)
    }

    /// Ids of plain text: control-token spellings in it stay ordinary text.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        match &self.tok {
            Tok::Tiktoken(t) => t.encode_text(text),
            Tok::Hf(t) => t.encode_text(text),
        }
    }

    /// Generates after `prompt` ids; stops on `<|endoftext|>` or
    /// `<|im_end|>`. `on_text` gets the printable pieces of the answer (see
    /// [`AnswerStream`]); returning `false` stops.
    pub fn generate(
        &self,
        prompt: &[u32],
        opts: &GenOptions,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let limit = self.max_positions();
        if prompt.is_empty() || prompt.len() >= limit {
            return Err(Error::Input(format!(
                "prompt of {} positions does not fit the answer model's {limit}",
                prompt.len()
            )));
        }
        // More new ids than the positions leave is refused, not clamped.
        let max_new = opts.max_new_tokens;
        check_room(max_new, prompt.len(), limit)?;
        let mut decoder = StreamDecoder::new(self.tok.bytes());
        let mut stream = AnswerStream::new();
        let (mut ended, mut cancelled) = (false, false);
        let on_token = |tok: u32, _| {
            let stop = tok == self.endoftext || tok == self.im_end;
            let go_on = if tok == self.endoftext {
                true
            } else {
                let piece = stream.push(&decoder.push(tok));
                piece.is_empty() || on_text(&piece)
            };
            ended |= stop;
            cancelled |= !go_on && !stop;
            Ok(go_on && !stop)
        };
        let ids = match &self.backend {
            Backend::Dense(llm) => {
                let x = llm.embed(prompt)?;
                generate_ids(llm, &x, prompt, max_new, opts, on_token)?
            }
            Backend::Gguf(lm, device) => {
                let mut lm = lm.lock().unwrap_or_else(|p| p.into_inner());
                lm.reset();
                let first = lm.forward(prompt, 0, device)?;
                let mut pos = prompt.len();
                let next = |tok: u32| {
                    let l = lm.forward(&[tok], pos, device);
                    pos += 1;
                    l
                };
                choose_ids(self.vocab, first, next, prompt, max_new, opts, on_token)?
            }
        };
        let rest = stream.finish(&decoder.finish());
        if !rest.is_empty() {
            on_text(&rest);
        }
        let stop = StopReason::of(ended, cancelled, ids.len(), max_new, prompt.len(), limit);
        Ok(Generation {
            text: clean_text(stream.printed()).to_string(),
            ids,
            prompt_tokens: prompt.len(),
            stop,
        })
    }
}
