//! Top-K for every user: scores blocks of users against all items with one matrix product
//! (faer's GEMM), then keeps the best K unseen items of each row with a bounded heap.
//!
//! Ties are broken by the lower item index, so the lists are deterministic.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;

use crate::data::Csr;

/// Scores held per block of users: about 16 MiB of f32.
const BLOCK_CELLS: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    score: f32,
    item: u32,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    /// "Greater" means better: higher score, then lower item index.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.item.cmp(&self.item))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The best `n` (item index, score) pairs of one row of scores, skipping `exclude` (sorted).
pub fn select_top(scores: &[f32], exclude: &[u32], n: usize) -> Vec<(u32, f32)> {
    if n == 0 {
        return Vec::new();
    }
    // A min-heap of the best n so far (Reverse ordering via the worst at the top).
    let mut heap: BinaryHeap<std::cmp::Reverse<Candidate>> = BinaryHeap::with_capacity(n + 1);
    let mut skip = exclude.iter().peekable();
    for (i, &score) in scores.iter().enumerate() {
        let i = i as u32;
        while skip.peek().is_some_and(|&&s| s < i) {
            skip.next();
        }
        if skip.peek() == Some(&&i) || score.is_nan() {
            continue;
        }
        let cand = Candidate { score, item: i };
        if heap.len() < n {
            heap.push(std::cmp::Reverse(cand));
        } else if heap.peek().is_some_and(|w| cand > w.0) {
            heap.pop();
            heap.push(std::cmp::Reverse(cand));
        }
    }
    let mut out: Vec<Candidate> = heap.into_iter().map(|r| r.0).collect();
    out.sort_by(|a, b| b.cmp(a));
    out.into_iter().map(|c| (c.item, c.score)).collect()
}

/// Top-`n` unseen items for every row of `users` (row-major, `k` columns).
///
/// `seen` has one row per user (rows beyond its end have seen nothing).
pub fn top_k_all(
    users: &[f32],
    items: &[f32],
    k: usize,
    seen: &Csr,
    n: usize,
) -> Vec<Vec<(u32, f32)>> {
    let user_rows = users.len() / k;
    let item_rows = items.len() / k;
    if user_rows == 0 {
        return Vec::new();
    }
    let block = (BLOCK_CELLS / item_rows.max(1)).clamp(1, 1024);
    let y = MatRef::from_row_major_slice(items, item_rows, k);
    let blocks: Vec<usize> = (0..user_rows).step_by(block).collect();
    blocks
        .par_iter()
        .flat_map_iter(|&start| {
            let end = (start + block).min(user_rows);
            let x = MatRef::from_row_major_slice(&users[start * k..end * k], end - start, k);
            // Column-major block of scores, transposed: one column per user is contiguous.
            let mut s = Mat::<f32>::zeros(item_rows, end - start);
            matmul(s.as_mut(), Accum::Replace, y, x.transpose(), 1.0, Par::Seq);
            (start..end)
                .map(|u| {
                    let col = s.col(u - start);
                    let scores: Vec<f32> = match col.try_as_col_major() {
                        Some(c) => c.as_slice().to_vec(),
                        None => (0..item_rows).map(|i| col[i]).collect(),
                    };
                    let exclude: &[u32] = if u < seen.rows() {
                        seen.row_indices(u)
                    } else {
                        &[]
                    };
                    select_top(&scores, exclude, n)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_top_orders_breaks_ties_and_excludes() {
        let scores = [0.5, 2.0, 2.0, -1.0, 3.0];
        assert_eq!(
            select_top(&scores, &[], 3),
            vec![(4, 3.0), (1, 2.0), (2, 2.0)]
        );
        assert_eq!(select_top(&scores, &[1, 4], 2), vec![(2, 2.0), (0, 0.5)]);
        assert_eq!(select_top(&scores, &[0, 1, 2, 3, 4], 2), vec![]);
        assert_eq!(select_top(&scores, &[], 0), vec![]);
    }
}
