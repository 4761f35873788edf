//! The most-popular baseline and fallback: items ranked by how many users interacted with them
//! in the training window, ties broken by the lower item id.

use std::collections::HashMap;

/// Items ranked by popularity, most popular first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Popularity {
    /// (item id, number of users), best first.
    ranked: Vec<(i64, u64)>,
    /// The same counts by item id, for lookups.
    counts: HashMap<i64, u64>,
}

impl Popularity {
    /// Counts distinct users per item from (user, item) pairs (each pair counted once).
    pub fn from_pairs(item_ids: impl IntoIterator<Item = i64>) -> Popularity {
        let mut counts: HashMap<i64, u64> = HashMap::new();
        for item in item_ids {
            *counts.entry(item).or_default() += 1;
        }
        let mut ranked: Vec<(i64, u64)> = counts.iter().map(|(&i, &n)| (i, n)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Popularity { ranked, counts }
    }

    /// The best `n` items not in `seen`, with their user counts.
    pub fn top(&self, n: usize, seen: impl Fn(i64) -> bool) -> Vec<(i64, u64)> {
        self.ranked
            .iter()
            .filter(|(item, _)| !seen(*item))
            .take(n)
            .copied()
            .collect()
    }

    /// How many users interacted with an item (0 for an item never seen).
    pub fn count(&self, item: i64) -> u64 {
        self.counts.get(&item).copied().unwrap_or(0)
    }

    /// Every ranked (item id, user count), best first.
    pub fn ranked(&self) -> &[(i64, u64)] {
        &self.ranked
    }

    /// Whether `item` is ranked (someone interacted with it in the window).
    pub fn contains(&self, item: i64) -> bool {
        self.counts.contains_key(&item)
    }

    /// Number of ranked items.
    pub fn len(&self) -> usize {
        self.ranked.len()
    }

    /// Whether no item is ranked.
    pub fn is_empty(&self) -> bool {
        self.ranked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_count_then_id_and_skips_seen() {
        let p = Popularity::from_pairs([5, 3, 5, 3, 9, 1]);
        assert_eq!(p.top(3, |_| false), vec![(3, 2), (5, 2), (1, 1)]);
        assert_eq!(p.top(2, |i| i == 3), vec![(5, 2), (1, 1)]);
    }
}
