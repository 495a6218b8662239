//! One validation for what a caller may ask of a generation. The command
//! line, the HTTP routes and the TUI build their [`GenOptions`] through
//! [`GenRequest::options`], and every decoder checks its room with
//! [`check_room`], so a value one front end refuses the others refuse too.
//!
//! The rule for `max_new_tokens` is to refuse, not to clamp: a generation
//! whose prompt and `max_new_tokens` do not fit the decoder's positions is
//! an error naming the room there is ([`Error::NoRoom`]). A generation can
//! therefore reach the position limit only when it was asked for exactly
//! the room left; its [`StopReason`] then says `position_limit`.

use serde::Serialize;

use super::{GenOptions, Sampling};
use crate::{Error, Result};

/// A generation setting a caller gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    MaxNewTokens,
    Temperature,
    TopP,
    TopK,
    RepetitionPenalty,
}

impl Knob {
    /// The name of a request field (`max_new_tokens`).
    pub fn name(self) -> &'static str {
        match self {
            Knob::MaxNewTokens => "max_new_tokens",
            Knob::Temperature => "temperature",
            Knob::TopP => "top_p",
            Knob::TopK => "top_k",
            Knob::RepetitionPenalty => "repetition_penalty",
        }
    }

    /// The command-line flag (`--max-new-tokens`; `c3 ask`'s `--top-k`
    /// counts chunks, so sampling's is `--sample-top-k`).
    pub fn flag(self) -> &'static str {
        match self {
            Knob::MaxNewTokens => "--max-new-tokens",
            Knob::Temperature => "--temperature",
            Knob::TopP => "--top-p",
            Knob::TopK => "--sample-top-k",
            Knob::RepetitionPenalty => "--repetition-penalty",
        }
    }
}

impl std::fmt::Display for Knob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a caller asks of a generation; `None` takes the default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenRequest {
    pub max_new_tokens: Option<usize>,
    /// 0 (or none): greedy.
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
    pub repetition_penalty: Option<f32>,
}

fn bad(knob: Knob, value: impl ToString, expected: &'static str) -> Error {
    Error::GenSetting {
        knob,
        value: value.to_string(),
        expected,
    }
}

impl GenRequest {
    /// Validates every value and builds the options; `default_max_new` when
    /// no `max_new_tokens` is given. Ranges: `max_new_tokens` ≥ 1,
    /// `temperature` finite ≥ 0, `top_p` in (0, 1], `top_k` ≥ 1,
    /// `repetition_penalty` finite > 0.
    pub fn options(&self, default_max_new: usize) -> Result<GenOptions> {
        let max_new_tokens = self.max_new_tokens.unwrap_or(default_max_new);
        if max_new_tokens == 0 {
            return Err(bad(Knob::MaxNewTokens, 0, "must be at least 1"));
        }
        if let Some(t) = self.temperature {
            if !(t.is_finite() && t >= 0.0) {
                return Err(bad(
                    Knob::Temperature,
                    t,
                    "must be a finite number >= 0 (0 is greedy)",
                ));
            }
        }
        if let Some(p) = self.top_p {
            if !(p.is_finite() && p > 0.0 && p <= 1.0) {
                return Err(bad(Knob::TopP, p, "must be a number in (0, 1]"));
            }
        }
        if self.top_k == Some(0) {
            return Err(bad(Knob::TopK, 0, "must be at least 1"));
        }
        if let Some(r) = self.repetition_penalty {
            if !(r.is_finite() && r > 0.0) {
                return Err(bad(
                    Knob::RepetitionPenalty,
                    r,
                    "must be a finite number > 0 (1 turns it off)",
                ));
            }
        }
        let sampling = match self.temperature {
            Some(t) if t > 0.0 => Sampling::TopP {
                temperature: t,
                top_p: self.top_p.unwrap_or(1.0),
                top_k: self.top_k,
                seed: self.seed.unwrap_or(0),
            },
            _ => Sampling::Greedy,
        };
        Ok(GenOptions {
            max_new_tokens,
            sampling,
            repetition_penalty: self.repetition_penalty,
            ..GenOptions::default()
        })
    }
}

/// Refuses a generation that cannot fit: `prompt` positions plus
/// `max_new` new ids must fit the decoder's `positions`.
pub fn check_room(max_new: usize, prompt: usize, positions: usize) -> Result<()> {
    if prompt.saturating_add(max_new) > positions {
        return Err(Error::NoRoom {
            asked: max_new,
            prompt,
            positions,
        });
    }
    Ok(())
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model ended its answer (a stop id), or no id was left to choose.
    End,
    /// `max_new_tokens` ids were generated.
    MaxNewTokens,
    /// The prompt and the generated ids fill the decoder's positions.
    PositionLimit,
    /// The caller stopped it (a client gone, a cancel, a closed output).
    Cancelled,
}

impl StopReason {
    /// The reason of a run of `generated` ids after `prompt` positions,
    /// allowed `max_new`: `ended` when its last id was a stop id,
    /// `cancelled` when the caller's callback said stop.
    pub fn of(
        ended: bool,
        cancelled: bool,
        generated: usize,
        max_new: usize,
        prompt: usize,
        positions: usize,
    ) -> StopReason {
        if ended {
            StopReason::End
        } else if cancelled {
            StopReason::Cancelled
        } else if generated >= max_new && prompt + generated >= positions {
            StopReason::PositionLimit
        } else if generated >= max_new {
            StopReason::MaxNewTokens
        } else {
            StopReason::End
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StopReason::End => "end",
            StopReason::MaxNewTokens => "max_new_tokens",
            StopReason::PositionLimit => "position_limit",
            StopReason::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(f: impl FnOnce(&mut GenRequest)) -> Result<GenOptions> {
        let mut r = GenRequest::default();
        f(&mut r);
        r.options(512)
    }

    fn knob_of(e: Error) -> Knob {
        match e {
            Error::GenSetting { knob, .. } => knob,
            e => panic!("not a setting error: {e}"),
        }
    }

    // Issue 21, point 8: the CLI took NaN, inf, 5 and 0 where the server
    // refused them; both now go through `options`.
    #[test]
    fn out_of_range_sampling_values_are_refused_by_name() {
        for t in [f32::NAN, f32::INFINITY, -1.0] {
            assert_eq!(
                knob_of(req(|r| r.temperature = Some(t)).unwrap_err()),
                Knob::Temperature
            );
        }
        for p in [5.0, 0.0, -0.5, f32::NAN, f32::INFINITY] {
            let e = req(|r| {
                r.temperature = Some(0.7);
                r.top_p = Some(p)
            })
            .unwrap_err();
            assert!(e.to_string().starts_with("top_p "), "{e}");
            assert_eq!(knob_of(e), Knob::TopP);
        }
        assert_eq!(
            knob_of(req(|r| r.max_new_tokens = Some(0)).unwrap_err()),
            Knob::MaxNewTokens
        );
        assert_eq!(knob_of(req(|r| r.top_k = Some(0)).unwrap_err()), Knob::TopK);
        for p in [0.0, -1.0, f32::NAN] {
            assert_eq!(
                knob_of(req(|r| r.repetition_penalty = Some(p)).unwrap_err()),
                Knob::RepetitionPenalty
            );
        }
    }

    #[test]
    fn valid_values_build_the_options() {
        assert_eq!(req(|_| {}).unwrap().max_new_tokens, 512);
        assert_eq!(req(|_| {}).unwrap().sampling, Sampling::Greedy);
        // Temperature 0 is greedy, top_p 1 is the whole distribution.
        let o = req(|r| {
            r.temperature = Some(0.0);
            r.top_p = Some(1.0)
        })
        .unwrap();
        assert_eq!(o.sampling, Sampling::Greedy);
        let o = req(|r| {
            r.temperature = Some(0.8);
            r.top_p = Some(0.9);
            r.top_k = Some(40);
            r.seed = Some(7);
            r.max_new_tokens = Some(3)
        })
        .unwrap();
        assert_eq!(
            o.sampling,
            Sampling::TopP {
                temperature: 0.8,
                top_p: 0.9,
                top_k: Some(40),
                seed: 7
            }
        );
        assert_eq!(o.max_new_tokens, 3);
    }

    #[test]
    fn room_is_the_positions_the_prompt_leaves() {
        assert!(check_room(10, 22, 32).is_ok());
        let e = check_room(11, 22, 32).unwrap_err();
        assert!(matches!(
            e,
            Error::NoRoom {
                asked: 11,
                prompt: 22,
                positions: 32
            }
        ));
        assert!(e.to_string().contains("leaves at most 10"), "{e}");
        assert!(check_room(usize::MAX, 1, 32).is_err());
    }

    #[test]
    fn stop_reasons() {
        use StopReason as S;
        assert_eq!(S::of(true, false, 5, 10, 5, 100), S::End);
        assert_eq!(S::of(false, true, 5, 10, 5, 100), S::Cancelled);
        assert_eq!(S::of(false, false, 10, 10, 5, 100), S::MaxNewTokens);
        assert_eq!(S::of(false, false, 10, 10, 90, 100), S::PositionLimit);
        assert_eq!(S::of(false, false, 3, 10, 5, 100), S::End);
    }
}
