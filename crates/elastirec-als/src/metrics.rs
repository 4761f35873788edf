//! Ranking metrics at a cutoff K, for one user; averages are taken by the caller.
//!
//! NDCG uses binary relevance: DCG = Σ_{rank r ≤ K, item relevant} 1 / log2(r + 1), divided by
//! the DCG of an ideal list holding min(|relevant|, K) relevant items.

use std::collections::HashSet;

/// Scores of one ranked list against one user's relevant items.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UserScores {
    pub ndcg: f64,
    pub precision: f64,
    pub recall: f64,
    pub hit: f64,
}

/// Scores `ranked` (best first, truncated to `k`) against `relevant` (non-empty).
pub fn score_list(ranked: &[i64], relevant: &HashSet<i64>, k: usize) -> UserScores {
    if relevant.is_empty() || k == 0 {
        return UserScores::default();
    }
    let mut dcg = 0.0;
    let mut hits = 0usize;
    for (r, item) in ranked.iter().take(k).enumerate() {
        if relevant.contains(item) {
            dcg += 1.0 / ((r + 2) as f64).log2();
            hits += 1;
        }
    }
    let ideal: f64 = (0..relevant.len().min(k))
        .map(|r| 1.0 / ((r + 2) as f64).log2())
        .sum();
    UserScores {
        ndcg: dcg / ideal,
        precision: hits as f64 / k as f64,
        recall: hits as f64 / relevant.len() as f64,
        hit: if hits > 0 { 1.0 } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_matches_hand_computation() {
        let rel: HashSet<i64> = [2, 9].into_iter().collect();
        let s = score_list(&[2, 5, 9], &rel, 3);
        let expected = (1.0 + 1.0 / 4f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((s.ndcg - expected).abs() < 1e-12);
        assert_eq!(s.precision, 2.0 / 3.0);
        assert_eq!(s.recall, 1.0);
        assert_eq!(score_list(&[2, 9], &rel, 2).ndcg, 1.0);
        assert_eq!(score_list(&[1, 3], &rel, 2).ndcg, 0.0);
        assert_eq!(score_list(&[1, 3], &rel, 2).hit, 0.0);
    }
}
