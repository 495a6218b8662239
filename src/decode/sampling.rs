//! Next-token choice: greedy (the release's default) or temperature/top-p
//! sampling with a seeded generator, so a sampled answer is reproducible.

/// How to pick each token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    Greedy,
    TopP {
        temperature: f32,
        top_p: f32,
        seed: u64,
    },
}

pub struct Sampler {
    mode: Sampling,
    rng: u64,
}

impl Sampler {
    pub fn new(mode: Sampling) -> Self {
        let seed = match mode {
            Sampling::TopP { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        // splitmix64 of the seed so seed 0 is a fine state.
        Self {
            mode,
            rng: splitmix(seed.wrapping_add(0x9e37_79b9_7f4a_7c15)),
        }
    }

    fn next_f64(&mut self) -> f64 {
        self.rng = splitmix(self.rng);
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Picks from `logits` (banned entries already set to -inf). `None` when
    /// every entry is banned.
    pub fn pick(&mut self, logits: &[f32]) -> Option<u32> {
        match self.mode {
            Sampling::Greedy => argmax(logits),
            Sampling::TopP {
                temperature, top_p, ..
            } => {
                if temperature <= 0.0 {
                    return argmax(logits);
                }
                self.sample(logits, temperature, top_p)
            }
        }
    }

    fn sample(&mut self, logits: &[f32], temperature: f32, top_p: f32) -> Option<u32> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return None;
        }
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, (((l - max) / temperature) as f64).exp()))
            .collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f64 = probs.iter().map(|p| p.1).sum();
        // Smallest prefix whose mass reaches top_p.
        let mut keep = 0;
        let mut mass = 0.0;
        for p in &probs {
            keep += 1;
            mass += p.1 / total;
            if mass >= top_p as f64 {
                break;
            }
        }
        probs.truncate(keep.max(1));
        let kept: f64 = probs.iter().map(|p| p.1).sum();
        let mut r = self.next_f64() * kept;
        for (id, p) in &probs {
            if r < *p {
                return Some(*id);
            }
            r -= p;
        }
        probs.last().map(|p| p.0)
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Index of the largest finite logit; the first one on ties (as torch does).
pub fn argmax(logits: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_nan() || l == f32::NEG_INFINITY {
            continue;
        }
        if best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    best.map(|(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_first_on_ties_and_skips_banned() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY, 0.5, -1.0]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY]), None);
    }

    #[test]
    fn sampling_is_reproducible_and_respects_top_p() {
        let logits = [0.0, 10.0, 0.0, 9.0];
        let mode = Sampling::TopP {
            temperature: 1.0,
            top_p: 0.5,
            seed: 42,
        };
        let mut a = Sampler::new(mode);
        let mut b = Sampler::new(mode);
        for _ in 0..50 {
            let x = a.pick(&logits);
            assert_eq!(x, b.pick(&logits));
            // top 1 token alone holds > 50% of the mass.
            assert_eq!(x, Some(1));
        }
    }

    #[test]
    fn wide_top_p_draws_several_tokens() {
        let logits = [1.0, 1.0, 1.0, 1.0];
        let mut s = Sampler::new(Sampling::TopP {
            temperature: 1.0,
            top_p: 1.0,
            seed: 7,
        });
        let drawn: std::collections::HashSet<_> =
            (0..200).filter_map(|_| s.pick(&logits)).collect();
        assert_eq!(drawn.len(), 4);
    }
}
