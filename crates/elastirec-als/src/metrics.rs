//! Offline metrics: ranking quality at a cutoff K for one user (averages are taken by the
//! caller, see [`crate::evaluate`]), catalog coverage of a set of lists, and rating errors
//! (RMSE, MAE) of predicted against actual values.
//!
//! Relevance is binary: an item is relevant to a user when it is in the user's held-out set.
//! With `ranked` truncated to K, `hits` the relevant items in it and `R` the relevant set:
//!
//! ```text
//!   precision@K = |hits| / K
//!   recall@K    = |hits| / |R|
//!   hit@K       = 1 if |hits| > 0 else 0            (averaged: the hit rate)
//!   NDCG@K      = Σ_{rank r ≤ K, item relevant} 1/log2(r + 1)  /  Σ_{r ≤ min(|R|, K)} 1/log2(r + 1)
//!   AP@K        = Σ_{rank r ≤ K, item relevant} precision@r  /  min(|R|, K)   (averaged: MAP@K)
//! ```
//!
//! Precision divides by K even when the list is shorter, so a user with no list scores 0 on
//! every metric (the backtest counts such users rather than dropping them).

use std::collections::HashSet;

/// Scores of one ranked list against one user's relevant items.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UserScores {
    pub ndcg: f64,
    pub precision: f64,
    pub recall: f64,
    pub hit: f64,
    /// Average precision at K (its mean over users is MAP@K).
    pub average_precision: f64,
}

/// Scores `ranked` (best first, truncated to `k`) against `relevant`; all zero when `relevant`
/// is empty or `k` is 0.
pub fn score_list(ranked: &[i64], relevant: &HashSet<i64>, k: usize) -> UserScores {
    if relevant.is_empty() || k == 0 {
        return UserScores::default();
    }
    let mut dcg = 0.0;
    let mut hits = 0usize;
    let mut precision_sum = 0.0;
    for (r, item) in ranked.iter().take(k).enumerate() {
        if relevant.contains(item) {
            dcg += 1.0 / ((r + 2) as f64).log2();
            hits += 1;
            precision_sum += hits as f64 / (r + 1) as f64;
        }
    }
    let ideal_hits = relevant.len().min(k);
    let ideal: f64 = (0..ideal_hits).map(|r| 1.0 / ((r + 2) as f64).log2()).sum();
    UserScores {
        ndcg: dcg / ideal,
        precision: hits as f64 / k as f64,
        recall: hits as f64 / relevant.len() as f64,
        hit: if hits > 0 { 1.0 } else { 0.0 },
        average_precision: precision_sum / ideal_hits as f64,
    }
}

/// Share of `catalog` that appears in at least one of `lists` (each truncated to `k`); items
/// outside the catalog are not counted. 0 for an empty catalog.
pub fn catalog_coverage<'a>(
    lists: impl IntoIterator<Item = &'a [i64]>,
    catalog: &HashSet<i64>,
    k: usize,
) -> f64 {
    if catalog.is_empty() {
        return 0.0;
    }
    let mut shown: HashSet<i64> = HashSet::new();
    for list in lists {
        shown.extend(list.iter().take(k).filter(|i| catalog.contains(i)));
    }
    shown.len() as f64 / catalog.len() as f64
}

/// Rating errors of predictions against actual values.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RatingErrors {
    /// Root mean squared error: sqrt(Σ (p − a)² / n).
    pub rmse: f64,
    /// Mean absolute error: Σ |p − a| / n.
    pub mae: f64,
    /// Number of (prediction, actual) pairs.
    pub n: u64,
}

/// RMSE and MAE over (predicted, actual) pairs; `None` when there are none.
pub fn rating_errors(pairs: impl IntoIterator<Item = (f64, f64)>) -> Option<RatingErrors> {
    let (mut sq, mut abs, mut n) = (0.0f64, 0.0f64, 0u64);
    for (p, a) in pairs {
        let e = p - a;
        sq += e * e;
        abs += e.abs();
        n += 1;
    }
    (n > 0).then(|| RatingErrors {
        rmse: (sq / n as f64).sqrt(),
        mae: abs / n as f64,
        n,
    })
}

/// Root mean squared error of `predicted` against `actual` (paired by position); `None` when
/// empty.
pub fn rmse(predicted: &[f32], actual: &[f32]) -> Option<f64> {
    rating_errors(pairs(predicted, actual)).map(|e| e.rmse)
}

/// Mean absolute error of `predicted` against `actual` (paired by position); `None` when empty.
pub fn mae(predicted: &[f32], actual: &[f32]) -> Option<f64> {
    rating_errors(pairs(predicted, actual)).map(|e| e.mae)
}

fn pairs<'a>(predicted: &'a [f32], actual: &'a [f32]) -> impl Iterator<Item = (f64, f64)> + 'a {
    predicted
        .iter()
        .zip(actual)
        .map(|(&p, &a)| (f64::from(p), f64::from(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[i64]) -> HashSet<i64> {
        items.iter().copied().collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn ndcg_matches_hand_computation() {
        let rel = set(&[2, 9]);
        let s = score_list(&[2, 5, 9], &rel, 3);
        let expected = (1.0 + 1.0 / 4f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((s.ndcg - expected).abs() < 1e-12);
        assert_eq!(s.precision, 2.0 / 3.0);
        assert_eq!(s.recall, 1.0);
        assert_eq!(score_list(&[2, 9], &rel, 2).ndcg, 1.0);
        assert_eq!(score_list(&[1, 3], &rel, 2).ndcg, 0.0);
        assert_eq!(score_list(&[1, 3], &rel, 2).hit, 0.0);
    }

    /// List [7, 1, 3, 8, 2], relevant {1, 2, 4}, K = 5: hits at ranks 2 and 5.
    #[test]
    fn every_ranking_metric_matches_hand_computation() {
        let s = score_list(&[7, 1, 3, 8, 2], &set(&[1, 2, 4]), 5);
        // precision@5 = 2 hits / 5 = 0.4
        assert!(close(s.precision, 0.4), "{s:?}");
        // recall@5 = 2 hits / 3 relevant
        assert!(close(s.recall, 2.0 / 3.0), "{s:?}");
        // hit = 1 (at least one hit)
        assert_eq!(s.hit, 1.0);
        // DCG = 1/log2(3) + 1/log2(6) = 0.630930 + 0.386853 = 1.017783
        // IDCG (3 relevant, all on top) = 1/log2(2) + 1/log2(3) + 1/log2(4) = 1 + 0.630930 + 0.5
        //      = 2.130930; NDCG = 1.017783 / 2.130930 = 0.477624
        assert!((s.ndcg - 0.477_624).abs() < 1e-6, "{s:?}");
        // AP@5 = (precision@2 + precision@5) / min(3, 5) = (1/2 + 2/5) / 3 = 0.9 / 3 = 0.3
        assert!(close(s.average_precision, 0.3), "{s:?}");
    }

    /// K shorter than the list and than the relevant set: only the first K ranks count, and the
    /// ideal list holds K relevant items.
    #[test]
    fn the_cutoff_truncates_the_list_and_the_ideal() {
        // List [1, 5, 2, 3], relevant {1, 2, 3}, K = 2: only rank 1 hits.
        let s = score_list(&[1, 5, 2, 3], &set(&[1, 2, 3]), 2);
        // precision@2 = 1/2; recall@2 = 1/3
        assert!(
            close(s.precision, 0.5) && close(s.recall, 1.0 / 3.0),
            "{s:?}"
        );
        // DCG = 1/log2(2) = 1; IDCG over min(3, 2) = 2 ranks = 1 + 1/log2(3) = 1.630930;
        // NDCG = 0.613147
        assert!((s.ndcg - 0.613_147).abs() < 1e-6, "{s:?}");
        // AP@2 = precision@1 / min(3, 2) = 1 / 2
        assert!(close(s.average_precision, 0.5), "{s:?}");
    }

    /// A perfect list scores 1 on NDCG, AP and hit; no list scores 0 everywhere.
    #[test]
    fn perfect_and_missing_lists() {
        let rel = set(&[4, 6]);
        let s = score_list(&[6, 4, 1], &rel, 3);
        assert_eq!(
            (s.ndcg, s.average_precision, s.hit, s.recall),
            (1.0, 1.0, 1.0, 1.0)
        );
        // precision@3 = 2/3: the third slot cannot hit
        assert!(close(s.precision, 2.0 / 3.0));
        assert_eq!(score_list(&[], &rel, 3), UserScores::default());
        assert_eq!(score_list(&[4], &HashSet::new(), 3), UserScores::default());
        assert_eq!(score_list(&[4], &rel, 0), UserScores::default());
    }

    #[test]
    fn catalog_coverage_matches_hand_computation() {
        let catalog = set(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let a: &[i64] = &[1, 2, 3];
        let b: &[i64] = &[3, 4, 99];
        let c: &[i64] = &[5, 6, 7];
        // K = 2: {1, 2} ∪ {3, 4} ∪ {5, 6} = 6 of 10 (99 is outside the catalog anyway)
        assert!(close(catalog_coverage([a, b, c], &catalog, 2), 0.6));
        // K = 3: {1, 2, 3, 4, 5, 6, 7} = 7 of 10; 99 is not in the catalog
        assert!(close(catalog_coverage([a, b, c], &catalog, 3), 0.7));
        assert_eq!(catalog_coverage([a], &HashSet::new(), 3), 0.0);
        assert_eq!(catalog_coverage(Vec::<&[i64]>::new(), &catalog, 3), 0.0);
    }

    #[test]
    fn rmse_and_mae_match_hand_computation() {
        // errors: 4.5−4 = 0.5, 2−3 = −1, 3.5−3.5 = 0, 1−3 = −2
        let predicted = [4.5, 2.0, 3.5, 1.0];
        let actual = [4.0, 3.0, 3.5, 3.0];
        // RMSE = sqrt((0.25 + 1 + 0 + 4) / 4) = sqrt(1.3125) = 1.145644
        assert!((rmse(&predicted, &actual).unwrap() - 1.3125f64.sqrt()).abs() < 1e-12);
        // MAE = (0.5 + 1 + 0 + 2) / 4 = 0.875
        assert!(close(mae(&predicted, &actual).unwrap(), 0.875));
        let e = rating_errors([(1.0, 1.0), (3.0, 1.0)]).unwrap();
        // RMSE = sqrt((0 + 4) / 2) = sqrt(2); MAE = 2 / 2 = 1
        assert_eq!(e.n, 2);
        assert!(close(e.rmse, 2f64.sqrt()) && close(e.mae, 1.0));
        assert_eq!(rmse(&[], &[]), None);
        assert_eq!(rating_errors(std::iter::empty()), None);
    }
}
