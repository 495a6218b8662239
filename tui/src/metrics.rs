//! The two fidelity numbers of a reconstruction, from `c3::eval` (the same
//! definitions `c3 expand` and `c3 eval` report).

/// Both fidelity numbers of one reconstruction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fidelity {
    /// |set(pred words) ∩ set(gt words)| / |set(gt words)|.
    pub precision: f64,
    /// 1 - levenshtein(pred chars, gt chars) / max(len).
    pub edit_similarity: f64,
}

impl Fidelity {
    pub fn of(pred: &str, gt: &str) -> Self {
        Fidelity {
            precision: c3::eval::precision(pred, gt),
            edit_similarity: c3::eval::edit_similarity(pred, gt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fox_definitions() {
        let f = Fidelity::of("a a x", "a b");
        assert_eq!(f.precision, 0.5);
        let f = Fidelity::of("kitten", "sitting");
        assert!((f.edit_similarity - (1.0 - 3.0 / 7.0)).abs() < 1e-12);
    }
}
