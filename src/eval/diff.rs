//! Word diff of a reconstruction against its original (longest common
//! subsequence over whitespace-separated words).

/// One run of the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    Same(Vec<&'a str>),
    /// Only in the original.
    Removed(Vec<&'a str>),
    /// Only in the reconstruction.
    Added(Vec<&'a str>),
}

/// Above this many cells the LCS table is skipped and the texts are shown
/// as one replacement (keeps memory bounded for huge inputs).
const MAX_CELLS: usize = 50_000_000;

/// Diff from `original` to `recon`, runs of equal kind merged.
pub fn word_diff<'a>(original: &'a str, recon: &'a str) -> Vec<Op<'a>> {
    let a: Vec<&str> = original.split_whitespace().collect();
    let b: Vec<&str> = recon.split_whitespace().collect();
    let mut ops: Vec<Op<'a>> = Vec::new();
    let mut push = |op: Op<'a>| match (ops.last_mut(), op) {
        (Some(Op::Same(x)), Op::Same(y)) => x.extend(y),
        (Some(Op::Removed(x)), Op::Removed(y)) => x.extend(y),
        (Some(Op::Added(x)), Op::Added(y)) => x.extend(y),
        (_, op) => ops.push(op),
    };
    if (a.len() + 1) * (b.len() + 1) > MAX_CELLS {
        push(Op::Removed(a));
        push(Op::Added(b));
        return ops;
    }
    // lcs[i][j] = LCS length of a[i..], b[j..].
    let w = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            push(Op::Same(vec![a[i]]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
            // Removals before additions, as word-diff shows a replacement.
            push(Op::Removed(vec![a[i]]));
            i += 1;
        } else {
            push(Op::Added(vec![b[j]]));
            j += 1;
        }
    }
    ops
}

/// Renders like `git diff --word-diff=plain`: `[-removed-]{+added+}`.
pub fn render(ops: &[Op]) -> String {
    let parts: Vec<String> = ops
        .iter()
        .map(|op| match op {
            Op::Same(w) => w.join(" "),
            Op::Removed(w) => format!("[-{}-]", w.join(" ")),
            Op::Added(w) => format!("{{+{}+}}", w.join(" ")),
        })
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_one_run() {
        let d = word_diff("a b  c", "a b c");
        assert_eq!(d, vec![Op::Same(vec!["a", "b", "c"])]);
        assert_eq!(render(&d), "a b c");
    }

    #[test]
    fn one_word_changed() {
        let d = word_diff("the quick fox", "the slow fox");
        assert_eq!(render(&d), "the [-quick-] {+slow+} fox");
    }

    #[test]
    fn added_and_removed_at_ends() {
        assert_eq!(render(&word_diff("a b", "a b c")), "a b {+c+}");
        assert_eq!(render(&word_diff("x a b", "a b")), "[-x-] a b");
        assert_eq!(render(&word_diff("", "")), "");
    }
}
