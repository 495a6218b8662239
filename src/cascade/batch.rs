//! How both encoders group texts of unequal length into padded forwards.

/// Indices of `lens` grouped for padded forwards: longest first, and a text
/// joins a group only with at least 3/4 of the group's longest length, so
/// padding adds under a third to any group's work (a document's short last
/// chunk gets its own forward instead of being padded to 1000 tokens).
pub(crate) fn length_groups(lens: &[usize]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lens[i]));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match groups.last_mut() {
            Some(g) if 4 * lens[i] >= 3 * lens[g[0]] => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::length_groups;

    #[test]
    fn groups_keep_padding_under_a_quarter_and_cover_every_text() {
        let lens = [1000, 200, 990, 760, 740, 1000, 10];
        let groups = length_groups(&lens);
        assert_eq!(groups, vec![vec![0, 5, 2, 3], vec![4], vec![1], vec![6]]);
        let mut all: Vec<usize> = groups.concat();
        all.sort();
        assert_eq!(all, (0..lens.len()).collect::<Vec<_>>());
        assert!(length_groups(&[]).is_empty());
    }
}
