//! Top-K for every user: scores blocks of users against tiles of items with one matrix product
//! each (faer's GEMM), then keeps the best K unseen items of each row in a pool cut back by
//! selection (a single row uses a bounded heap, [`select_top`]).
//!
//! Ties are broken by the lower item index, so the lists are deterministic.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use faer::linalg::matmul::matmul;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;

use crate::data::Csr;

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

/// Users per block: each block's factors are one GEMM operand, its lists live in one place.
const USER_BLOCK: usize = 256;
/// Items per tile: a tile of scores (`ITEM_TILE × USER_BLOCK` f32, 2 MiB) stays in cache
/// between the GEMM that writes it and the selection that reads it.
const ITEM_TILE: usize = 2048;

/// The best `n` so far of one user: an unordered pool of candidates that beat the floor, cut
/// back to the best `n` (a selection, linear) whenever it holds `2n`. Each entry costs O(1)
/// amortized whatever `n` is; a sorted list paid O(n) per entry, which made the 50 to 300
/// candidates of a night with `[rules]` several times dearer than the 10 of one without.
struct Running {
    pool: Vec<(f32, u32)>,
    n: usize,
    /// The n-th best score when the pool was last cut back (none yet: minus infinity).
    floor: f32,
}

/// Best first: higher score, then the lower item index.
fn best_first(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

impl Running {
    fn new(n: usize) -> Self {
        Running {
            pool: Vec::with_capacity(2 * n),
            n,
            floor: f32::NEG_INFINITY,
        }
    }

    /// The score an item must exceed to enter (items come in increasing index, so an equal
    /// score loses the tie to an item already in).
    #[inline]
    fn bar(&self) -> f32 {
        self.floor
    }

    #[inline]
    fn offer(&mut self, score: f32, item: u32) {
        self.pool.push((score, item));
        if self.pool.len() >= 2 * self.n {
            self.cut();
        }
    }

    /// Keeps the best `n` of the pool and raises the floor to the n-th.
    fn cut(&mut self) {
        if self.pool.len() > self.n {
            self.pool.select_nth_unstable_by(self.n - 1, best_first);
            self.pool.truncate(self.n);
        }
        if self.pool.len() == self.n {
            self.floor = self.pool[self.n - 1].0;
        }
    }

    /// The best `n`, best first, as (item, score).
    fn finish(mut self) -> Vec<(u32, f32)> {
        self.pool.sort_unstable_by(best_first);
        self.pool.truncate(self.n);
        self.pool.into_iter().map(|(s, i)| (i, s)).collect()
    }
}

/// Top-`n` unseen items for every row of `users` (row-major, `k` columns).
///
/// `seen` has one row per user (rows beyond its end have seen nothing). Blocks of users run in
/// parallel; within a block, tiles of items are scored by one GEMM each (faer, sequential within
/// the block) and scanned column by column: a score is compared with the user's floor (an n-th
/// best) and only a winner is checked against the seen items (binary search) and pooled.
pub fn top_k_all(
    users: &[f32],
    items: &[f32],
    k: usize,
    seen: &Csr,
    n: usize,
) -> Vec<Vec<(u32, f32)>> {
    let user_rows = users.len() / k.max(1);
    let item_rows = items.len() / k.max(1);
    if user_rows == 0 || k == 0 || n == 0 {
        return vec![Vec::new(); user_rows];
    }
    let blocks: Vec<usize> = (0..user_rows).step_by(USER_BLOCK).collect();
    blocks
        .par_iter()
        .flat_map_iter(|&start| {
            let end = (start + USER_BLOCK).min(user_rows);
            let x = MatRef::from_row_major_slice(&users[start * k..end * k], end - start, k);
            let mut running: Vec<Running> = (start..end).map(|_| Running::new(n)).collect();
            // Column-major tile of scores: one contiguous column per user.
            let mut s = Mat::<f32>::zeros(ITEM_TILE.min(item_rows), end - start);
            for t0 in (0..item_rows).step_by(ITEM_TILE) {
                let t1 = (t0 + ITEM_TILE).min(item_rows);
                let y = MatRef::from_row_major_slice(&items[t0 * k..t1 * k], t1 - t0, k);
                let mut tile = s.as_mut().subrows_mut(0, t1 - t0);
                matmul(
                    tile.rb_mut(),
                    Accum::Replace,
                    y,
                    x.transpose(),
                    1.0,
                    Par::Seq,
                );
                for (c, run) in running.iter_mut().enumerate() {
                    let u = start + c;
                    let exclude: &[u32] = if u < seen.rows() {
                        seen.row_indices(u)
                    } else {
                        &[]
                    };
                    let col = tile.rb().col(c);
                    let scores: &[f32] = match col.try_as_col_major() {
                        Some(c) => c.as_slice(),
                        None => unreachable!("a column of a Mat is contiguous"),
                    };
                    scan(scores, t0 as u32, exclude, run);
                }
            }
            running.into_iter().map(Running::finish).collect::<Vec<_>>()
        })
        .collect()
}

/// Offers a tile's scores (items `first..`) to a user's running list.
#[inline]
fn scan(scores: &[f32], first: u32, exclude: &[u32], run: &mut Running) {
    let mut bar = run.bar();
    let mut chunks = scores.chunks_exact(8);
    let mut base = first;
    for chunk in &mut chunks {
        // Most chunks hold no winner: one comparison pass the compiler vectorizes.
        if chunk.iter().fold(false, |any, &s| any | (s > bar)) {
            for (j, &s) in chunk.iter().enumerate() {
                if s > bar {
                    let item = base + j as u32;
                    if exclude.binary_search(&item).is_err() {
                        run.offer(s, item);
                        bar = run.bar();
                    }
                }
            }
        }
        base += 8;
    }
    for (j, &s) in chunks.remainder().iter().enumerate() {
        if s > bar {
            let item = base + j as u32;
            if exclude.binary_search(&item).is_err() {
                run.offer(s, item);
                bar = run.bar();
            }
        }
    }
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
