//! The training set: records made into examples (those too long for the
//! model skipped and counted, never cut), and which records each optimizer
//! step reads (file order or a seeded permutation per epoch; a micro-batch
//! is consecutive records, the last of an epoch may be shorter, nothing is
//! dropped).

use super::example::{build, Example, Record};
use super::records::Origin;
use super::rng::Rng;
use crate::tokenize::C3Tokenizer;
use crate::Result;

/// Length limits a record must fit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Decoder ids must be shorter than this (`--max-length`, upstream's
    /// `model_max_length`).
    pub max_length: usize,
    /// The encoder's and decoder's position limits.
    pub encoder_positions: usize,
    pub decoder_positions: usize,
}

/// A record left out because it does not fit.
#[derive(Debug, Clone)]
pub struct TooLong {
    pub origin: Origin,
    pub encoder_ids: usize,
    pub decoder_ids: usize,
}

/// Examples ready to train on.
pub struct Dataset {
    pub examples: Vec<Example>,
    pub origins: Vec<Origin>,
    pub too_long: Vec<TooLong>,
}

impl Dataset {
    pub fn build(
        tok: &C3Tokenizer,
        latent_len: usize,
        records: Vec<(Origin, Record)>,
        limits: Limits,
    ) -> Result<Self> {
        let mut d = Dataset {
            examples: Vec::with_capacity(records.len()),
            origins: Vec::with_capacity(records.len()),
            too_long: Vec::new(),
        };
        for (origin, r) in records {
            let ex = build(tok, latent_len, &r)?;
            let (e, n) = (ex.enc_ids.len(), ex.dec_ids.len());
            if n >= limits.max_length
                || n > limits.decoder_positions
                || e > limits.encoder_positions
            {
                d.too_long.push(TooLong {
                    origin,
                    encoder_ids: e,
                    decoder_ids: n,
                });
                continue;
            }
            d.examples.push(ex);
            d.origins.push(origin);
        }
        Ok(d)
    }

    pub fn len(&self) -> usize {
        self.examples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// blake3 of every example's ids and labels, in order: what a resumed
    /// run checks it is reading the same data.
    pub fn signature(&self) -> String {
        let mut h = blake3::Hasher::new();
        for e in &self.examples {
            for part in [&e.enc_ids, &e.dec_ids] {
                h.update(&(part.len() as u64).to_le_bytes());
                for id in part.iter() {
                    h.update(&id.to_le_bytes());
                }
            }
            for l in &e.labels {
                h.update(&l.to_le_bytes());
            }
        }
        h.finalize().to_hex()[..16].to_string()
    }

    /// Longest encoder and decoder sequences.
    pub fn longest(&self) -> (usize, usize) {
        let e = self
            .examples
            .iter()
            .map(|x| x.enc_ids.len())
            .max()
            .unwrap_or(0);
        let d = self
            .examples
            .iter()
            .map(|x| x.dec_ids.len())
            .max()
            .unwrap_or(0);
        (e, d)
    }
}

/// The order records are read in each epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    File,
    Shuffle,
}

/// Which records each optimizer step reads.
#[derive(Debug, Clone, Copy)]
pub struct Batches {
    pub records: usize,
    pub micro_batch: usize,
    pub grad_accum: usize,
    pub order: Order,
    pub seed: u64,
}

impl Batches {
    pub fn micro_batches_per_epoch(&self) -> usize {
        self.records.div_ceil(self.micro_batch.max(1))
    }

    /// Optimizer steps per epoch; the last takes what is left.
    pub fn steps_per_epoch(&self) -> usize {
        self.micro_batches_per_epoch()
            .div_ceil(self.grad_accum.max(1))
    }

    /// The record order of epoch `epoch`.
    pub fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        match self.order {
            Order::File => (0..self.records).collect(),
            Order::Shuffle => {
                Rng::new(self.seed, &format!("shuffle/{epoch}")).permutation(self.records)
            }
        }
    }

    /// The micro-batches (record indices) of optimizer step `step`; steps
    /// past the first epoch run through later epochs.
    pub fn step(&self, step: usize) -> Vec<Vec<usize>> {
        let spe = self.steps_per_epoch().max(1);
        let (epoch, k) = (step / spe, step % spe);
        let order = self.epoch_order(epoch);
        let mb: Vec<&[usize]> = order.chunks(self.micro_batch.max(1)).collect();
        let from = k * self.grad_accum;
        let to = (from + self.grad_accum).min(mb.len());
        mb[from.min(to)..to].iter().map(|m| m.to_vec()).collect()
    }

    /// (epoch, micro-batch index within it) where step `step` starts.
    pub fn cursor(&self, step: usize) -> (usize, usize) {
        let spe = self.steps_per_epoch().max(1);
        (step / spe, (step % spe) * self.grad_accum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_is_read_once_per_epoch_in_micro_batches() {
        let b = Batches {
            records: 7,
            micro_batch: 2,
            grad_accum: 3,
            order: Order::Shuffle,
            seed: 1,
        };
        assert_eq!((b.micro_batches_per_epoch(), b.steps_per_epoch()), (4, 2));
        let epoch: Vec<Vec<Vec<usize>>> = (0..2).map(|s| b.step(s)).collect();
        assert_eq!(epoch[0].len(), 3);
        assert_eq!(epoch[1].len(), 1);
        let mut seen: Vec<usize> = epoch.concat().concat();
        assert_eq!(epoch[1][0].len(), 1);
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        // Another epoch, another order; the same seed, the same orders.
        assert_ne!(b.step(2).concat(), b.step(0).concat());
        assert_eq!(b.step(2), b.step(2));
        let f = Batches {
            order: Order::File,
            ..b
        };
        assert_eq!(f.step(0), vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
        assert_eq!(f.step(3), vec![vec![6]]);
    }
}
