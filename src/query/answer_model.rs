//! A plain Qwen2 causal LM for `--mode text --answer-model DIR`: it reads the
//! chunks' stored text, so any chat checkpoint (e.g. Qwen2.5-3B-Instruct)
//! can answer from the same selection the latent path uses.

use std::path::Path;

use candle_core::{DType, Device};

use super::stream::{clean_text, AnswerStream};
use crate::decode::token_loop::generate_ids;
use crate::decode::{GenOptions, Generation};
use crate::model::config::{read_qwen_config, QWEN2, QWEN3};
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

/// A plain Qwen2 chat model and its tokenizer.
pub struct AnswerModel {
    llm: Qwen2,
    tok: Tok,
    /// `<|im_start|>`, `<|im_end|>`, `<|endoftext|>` in this vocabulary.
    pub(crate) im_start: u32,
    pub(crate) im_end: u32,
    endoftext: u32,
}

fn ckpt_err(dir: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: dir.to_path_buf(),
        msg: msg.into(),
    }
}

impl AnswerModel {
    /// Loads `dir`: `config.json` (model_type "qwen2"), safetensors, and
    /// `tokenizer.json` or `qwen.tiktoken`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
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
        let id = |s: &str| tok.control_id(s);
        let need = |s: &str| {
            id(s).ok_or_else(|| {
                ckpt_err(
                    dir,
                    format!("the tokenizer has no {s} (need a Qwen chat tokenizer)"),
                )
            })
        };
        Ok(Self {
            im_start: need("<|im_start|>")?,
            im_end: need("<|im_end|>")?,
            endoftext: need("<|endoftext|>")?,
            llm,
            tok,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.llm.config().max_position_embeddings
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
        let max_new = opts.max_new_tokens.min(limit - prompt.len());
        let mut decoder = StreamDecoder::new(self.tok.bytes());
        let mut stream = AnswerStream::new();
        let x = self.llm.embed(prompt)?;
        let ids = generate_ids(&self.llm, &x, prompt, max_new, opts, |tok, _| {
            let stop = tok == self.endoftext || tok == self.im_end;
            let go_on = if tok == self.endoftext {
                true
            } else {
                let piece = stream.push(&decoder.push(tok));
                piece.is_empty() || on_text(&piece)
            };
            Ok(go_on && !stop)
        })?;
        let rest = stream.finish(&decoder.finish());
        if !rest.is_empty() {
            on_text(&rest);
        }
        Ok(Generation {
            text: clean_text(stream.printed()).to_string(),
            ids,
            prompt_tokens: prompt.len(),
        })
    }
}
