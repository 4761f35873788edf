//! Fold-in: the factors of one user whom the night's model never saw (or who did something
//! since), solved against the night's item factors without retraining, and that user's list.
//!
//! It is the user half-step of implicit ALS (Hu, Koren, Volinsky, ICDM 2008, eq. 4) for one row:
//! with the item factors `Y` fixed, the confidence `c_i = 1 + alpha·w(r_i)` of each observed item
//! (`w(r) = r`, or `ln(1 + r/epsilon)` for `confidence = "log"`, eq. 6) and the preference
//! `p_i = 1` on observed items,
//!
//! ```text
//!   x = (YᵀY + Σ_i (c_i − 1) y_i y_iᵀ + (λ + β) I)⁻¹ · (Σ_i c_i y_i + β μ)
//! ```
//!
//! With `β = 0` this is exactly the system the trainer solves for a user row (so folding in a
//! known user's whole training history gives back the night's factors of that user, within the
//! solver's rounding: `elastirec-als`'s `foldin` tests check it). `β > 0` is the blend with
//! popularity when evidence is thin: a Gaussian prior `β‖x − μ‖²` centred on `μ`, the mean of
//! the night's user factors. The mean user's scores `μ·y_i` are the night's popular taste in the
//! model's own space, so a user with one or two items is pulled towards it, and the pull fades as
//! the observed items' confidence terms grow (`bench/foldin/` measures the choice of β). β is
//! given relative to the model's scale, `β = prior · tr(YᵀY)/k` (the mean eigenvalue of YᵀY),
//! so one setting means the same on a small and a large catalogue.
//!
//! YᵀY is formed once per model ([`FoldIn::new`], O(items·k²)); each fold-in is then one k×k
//! Cholesky solve (O(n·k² + k³) for n observed items) and scoring every item (O(items·k)).
//! Everything is accumulated in f64; the factors and scores are f32 like the trainer's.
//!
//! It lives here, below every stage, because both the batch recommend step (`elastirec-als`)
//! and serving (`elastirec-serve`, which must not link the trainer) fold users in with it.

use std::cmp::Ordering;

use crate::config::{Aggregate, ConfidenceKind, ModelConfig};
use crate::{Error, Result};

/// The prior's strength the API and `recommend --fold-in` use, relative to the model's scale
/// (`β = prior · tr(YᵀY)/k`): chosen on the validation split of `bench/foldin/` (cold users of
/// March 1998 in MovieLens 100K; never the test split) as the smallest prior of the grid 0.5, 1,
/// 2, 4, 8, 16, 32 whose lists beat the popularity list at 3, 5 and 10 given items (and so the
/// plain fold-in, which is below popularity there).
pub const DEFAULT_PRIOR: f32 = 8.0;

/// The settings of a fold-in: the model's confidence and regularization, and the prior.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FoldInParams {
    /// λ of training.
    pub regularization: f32,
    /// α of training: `c = 1 + alpha·w(r)`.
    pub alpha: f32,
    /// `w(r) = r` (linear) or `ln(1 + r/epsilon)` (log).
    pub confidence: ConfidenceKind,
    pub epsilon: f32,
    /// The strength of the prior centred on the mean user, relative to the model's scale:
    /// `β = prior · tr(YᵀY)/k`, the mean eigenvalue of YᵀY (0: exactly training's solve).
    pub prior: f32,
}

impl FoldInParams {
    /// The fold-in of a model trained with `config`, with prior strength `prior`.
    pub fn of_model(config: &ModelConfig, prior: f32) -> FoldInParams {
        FoldInParams {
            regularization: config.regularization,
            alpha: config.alpha,
            confidence: config.confidence,
            epsilon: config.epsilon,
            prior,
        }
    }

    /// The fold-in of the model whose `[model]` settings `model.json` records
    /// (`ModelInfo::params`), read field by field so that a model.json written by an older or
    /// newer elastirec still reads (a missing field has its default). An explicit-feedback model
    /// (ratings, ALS-WR with biases) has no implicit fold-in: an error says so.
    pub fn from_recorded(params: &serde_json::Value, prior: f32) -> Result<FoldInParams> {
        let d = ModelConfig::default();
        let num = |name: &str, default: f32| -> Result<f32> {
            match params.get(name) {
                None | Some(serde_json::Value::Null) => Ok(default),
                Some(v) => v.as_f64().map(|v| v as f32).ok_or_else(|| {
                    Error::InvalidInput(format!("model.json: params.{name} is not a number: {v}"))
                }),
            }
        };
        let text = |name: &str| params.get(name).and_then(|v| v.as_str());
        if text("feedback") == Some("explicit") {
            return Err(Error::InvalidInput(
                "the night's model is explicit-feedback (ratings): fold-in solves implicit \
                 feedback only; train with [model] feedback = \"implicit\""
                    .into(),
            ));
        }
        let confidence = match text("confidence") {
            None | Some("linear") => ConfidenceKind::Linear,
            Some("log") => ConfidenceKind::Log,
            Some(other) => {
                return Err(Error::InvalidInput(format!(
                    "model.json: params.confidence '{other}' is neither linear nor log"
                )));
            }
        };
        Ok(FoldInParams {
            regularization: num("regularization", d.regularization)?,
            alpha: num("alpha", d.alpha)?,
            confidence,
            epsilon: num("epsilon", d.epsilon)?,
            prior,
        })
    }

    /// `w(r)`, with `c − 1 = alpha·w(r)`.
    fn weight(&self, r: f32) -> f64 {
        match self.confidence {
            ConfidenceKind::Linear => f64::from(r),
            ConfidenceKind::Log => (1.0 + f64::from(r) / f64::from(self.epsilon)).ln(),
        }
    }
}

/// A model's item factors, ready to fold users in: YᵀY + (λ + β)I and βμ are formed once.
#[derive(Debug, Clone)]
pub struct FoldIn {
    k: usize,
    /// Row-major item factors, one row per item index.
    items: Vec<f32>,
    /// YᵀY + (λ + β)I, row-major k×k.
    base: Vec<f64>,
    /// βμ.
    prior_rhs: Vec<f64>,
    /// β in the model's scale.
    beta: f64,
    params: FoldInParams,
}

impl FoldIn {
    /// Prepares fold-ins against `items` (row-major, `k` columns per row). `mean_user` is μ, the
    /// mean of the night's user factors ([`mean_rows`]); without it the prior pulls towards 0.
    pub fn new(
        items: Vec<f32>,
        k: usize,
        params: FoldInParams,
        mean_user: Option<&[f32]>,
    ) -> Result<FoldIn> {
        if k == 0 || !items.len().is_multiple_of(k) {
            return Err(Error::InvalidInput(format!(
                "fold-in: {} item factor values do not make rows of {k} factors",
                items.len()
            )));
        }
        if let Some(mu) = mean_user
            && mu.len() != k
        {
            return Err(Error::InvalidInput(format!(
                "fold-in: the mean user has {} factors, the items {k}",
                mu.len()
            )));
        }
        let p = params;
        let finite = |v: f32| v.is_finite() && v >= 0.0;
        if !(finite(p.regularization) && finite(p.alpha) && finite(p.prior))
            || (p.confidence == ConfidenceKind::Log && !(p.epsilon.is_finite() && p.epsilon > 0.0))
        {
            return Err(Error::InvalidInput(format!(
                "fold-in: regularization, alpha and prior must be finite and >= 0 (and epsilon > 0 \
                 for log confidence), got {p:?}"
            )));
        }
        if items.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidInput(
                "fold-in: the item factors hold a non-finite value: retrain the night".into(),
            ));
        }
        let mut base = gramian(&items, k);
        // β in the model's own scale: `prior` times the mean eigenvalue of YᵀY (its trace / k).
        let beta = f64::from(p.prior) * (0..k).map(|d| base[d * k + d]).sum::<f64>() / k as f64;
        let shift = f64::from(p.regularization) + beta;
        for d in 0..k {
            base[d * k + d] += shift;
        }
        let prior_rhs = match mean_user {
            Some(mu) => mu.iter().map(|&m| beta * f64::from(m)).collect(),
            None => vec![0.0; k],
        };
        Ok(FoldIn {
            k,
            items,
            base,
            prior_rhs,
            beta,
            params,
        })
    }

    /// Factors per row.
    pub fn factors(&self) -> usize {
        self.k
    }

    /// Number of items (rows of the item factors).
    pub fn items(&self) -> usize {
        self.items.len() / self.k
    }

    /// β, the prior's strength in the model's scale (`prior · tr(YᵀY)/k`).
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The settings this fold-in uses.
    pub fn params(&self) -> FoldInParams {
        self.params
    }

    /// Row `i` of the item factors.
    pub fn item(&self, i: u32) -> &[f32] {
        &self.items[i as usize * self.k..(i as usize + 1) * self.k]
    }

    /// The user factors `x` for observed `(item index, value)` pairs (see the module docs). An
    /// item given twice counts once with its largest value, as in training's matrix.
    pub fn solve(&self, observed: &[(u32, f32)]) -> Result<Vec<f32>> {
        let k = self.k;
        let rows = self.items();
        let mut pairs = observed.to_vec();
        if let Some(&(i, _)) = pairs.iter().find(|(i, _)| *i as usize >= rows) {
            return Err(Error::InvalidInput(format!(
                "fold-in: item index {i} is out of range ({rows} items)"
            )));
        }
        if let Some(&(_, v)) = pairs.iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::InvalidInput(format!(
                "fold-in: value {v} is not a finite number"
            )));
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        pairs.dedup_by_key(|p| p.0);

        let mut a = self.base.clone();
        let mut b = self.prior_rhs.clone();
        let alpha = f64::from(self.params.alpha);
        for &(i, r) in &pairs {
            let y = self.item(i);
            let extra = alpha * self.params.weight(r);
            let conf = 1.0 + extra;
            for (row, &yr) in y.iter().enumerate() {
                let s = extra * f64::from(yr);
                // Lower triangle only: the factorization reads nothing else.
                for (col, &yc) in y.iter().enumerate().take(row + 1) {
                    a[row * k + col] += s * f64::from(yc);
                }
                b[row] += conf * f64::from(yr);
            }
        }
        if !cholesky_in_place(&mut a, k) {
            return Err(Error::InvalidInput(format!(
                "fold-in: the user's system is not positive definite (a negative value makes a \
                 confidence below 0?); raise [model] regularization above {}",
                self.params.regularization
            )));
        }
        cholesky_solve(&a, k, &mut b);
        let x: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::Internal(
                "fold-in produced non-finite factors".into(),
            ));
        }
        Ok(x)
    }

    /// `x·y_i` for every item `i`.
    pub fn scores(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.items()];
        dots(&self.items, x, &mut out);
        out
    }

    /// The best `n` (item index, score) pairs for user factors `x`, best first (ties by the
    /// lower index), leaving out the items of `exclude` (any order).
    ///
    /// One pass over the item factors with a bounded buffer: an item enters only when it beats
    /// the n-th best score so far, so nothing proportional to the catalogue is allocated (the
    /// plain version is [`FoldIn::top_reference`]).
    pub fn top(&self, x: &[f32], n: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
        if n == 0 {
            return Vec::new();
        }
        let mut skip = exclude.to_vec();
        skip.sort_unstable();
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let cap = 2 * n + 16;
        let mut kept: Vec<(u32, f32)> = Vec::with_capacity(cap + 1);
        // The n-th best score of the items kept when they were last cut to n.
        let mut floor = f32::NEG_INFINITY;
        let mut scores = [0.0f32; SCAN_BLOCK];
        for (b, block) in self.items.chunks(SCAN_BLOCK * self.k).enumerate() {
            let rows = block.len() / self.k;
            dots(block, x, &mut scores[..rows]);
            for (r, &s) in scores[..rows].iter().enumerate() {
                // Ties at the floor still enter: the lower index wins them.
                if s.is_nan() || s < floor {
                    continue;
                }
                let i = (b * SCAN_BLOCK + r) as u32;
                if skip.binary_search(&i).is_ok() {
                    continue;
                }
                kept.push((i, s));
                if kept.len() > cap {
                    kept.select_nth_unstable_by(n - 1, order);
                    kept.truncate(n);
                    floor = kept[n - 1].1;
                }
            }
        }
        best(kept, n)
    }

    /// [`FoldIn::top`] the plain way: every score, then the best `n` (its reference in tests).
    pub fn top_reference(&self, x: &[f32], n: usize, exclude: &[u32]) -> Vec<(u32, f32)> {
        let mut skip = exclude.to_vec();
        skip.sort_unstable();
        let scored: Vec<(u32, f32)> = self
            .scores(x)
            .into_iter()
            .enumerate()
            .map(|(i, s)| (i as u32, s))
            .filter(|(i, s)| !s.is_nan() && skip.binary_search(i).is_err())
            .collect();
        best(scored, n)
    }
}

/// How the events a request or a fold-in file gives become one value per item, as the
/// training export makes them: each event's value (1 when not given) times its type's weight
/// (`[prepare] event_weights`, 1 for types not listed), then `[prepare] aggregate` over the
/// item's events, and over the user's window value for the item when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct EventValues {
    pub weights: std::collections::BTreeMap<String, f32>,
    pub aggregate: Aggregate,
    /// Event types that do not make their items seen (`[events.types.T] seen = false`).
    pub unseen_types: std::collections::BTreeSet<String>,
}

impl Default for EventValues {
    /// No weights, `sum`: `[prepare]`'s defaults.
    fn default() -> Self {
        EventValues {
            weights: Default::default(),
            aggregate: Aggregate::Sum,
            unseen_types: Default::default(),
        }
    }
}

impl EventValues {
    /// The settings the training export recorded (`ExportManifest::params`, the `[prepare]`
    /// section), field by field; missing or unreadable ones keep their defaults.
    pub fn from_recorded(params: &serde_json::Value) -> EventValues {
        let weights = params
            .get("event_weights")
            .and_then(|w| w.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_f64()? as f32)))
                    .collect()
            })
            .unwrap_or_default();
        let aggregate = params
            .get("aggregate")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or(Aggregate::Sum);
        let unseen_types = params
            .get("event_types")
            .and_then(|t| t.as_object())
            .map(|m| {
                m.iter()
                    .filter(|(_, t)| t.get("seen").and_then(|s| s.as_bool()) == Some(false))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        EventValues {
            weights,
            aggregate,
            unseen_types,
        }
    }

    /// Whether an event of this type makes its item seen (left out of the user's lists).
    pub fn makes_seen(&self, event_type: Option<&str>) -> bool {
        event_type.is_none_or(|t| !self.unseen_types.contains(t))
    }

    /// One event's weighted value.
    pub fn value(&self, event_type: Option<&str>, value: Option<f32>) -> f32 {
        let w = event_type
            .and_then(|t| self.weights.get(t))
            .copied()
            .unwrap_or(1.0);
        value.unwrap_or(1.0) * w
    }

    /// Per item, in item order: the window value (if any) and the events after it, merged by
    /// the aggregate. `window` and `events` hold (item, value); `events` in time order.
    pub fn merge(&self, window: &[(i64, f32)], events: &[(i64, f32)]) -> Vec<(i64, f32)> {
        let mut out: std::collections::BTreeMap<i64, f32> = window.iter().copied().collect();
        for &(item, v) in events {
            match out.get_mut(&item) {
                None => {
                    let first = if self.aggregate == Aggregate::Count {
                        1.0
                    } else {
                        v
                    };
                    out.insert(item, first);
                }
                Some(acc) => {
                    *acc = match self.aggregate {
                        Aggregate::Sum => *acc + v,
                        Aggregate::Max => acc.max(v),
                        Aggregate::Last => v,
                        Aggregate::Count => *acc + 1.0,
                    }
                }
            }
        }
        // With a negative weight (a return, a dislike), an item whose events cancel out is left
        // out, as training leaves such pairs out.
        let negative = self.weights.values().any(|w| *w < 0.0);
        out.into_iter()
            .filter(|&(_, v)| !negative || v > 0.0)
            .collect()
    }
}

/// The `n` best (index, score) pairs, best first, ties by the lower index.
pub fn best(mut scored: Vec<(u32, f32)>, n: usize) -> Vec<(u32, f32)> {
    let order =
        |a: &(u32, f32), b: &(u32, f32)| -> Ordering { b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)) };
    if n == 0 {
        return Vec::new();
    }
    if scored.len() > n {
        scored.select_nth_unstable_by(n - 1, order);
        scored.truncate(n);
    }
    scored.sort_by(order);
    scored
}

/// The mean of the rows of a row-major matrix with `k` columns (zeros for no rows).
pub fn mean_rows(rows: &[f32], k: usize) -> Vec<f32> {
    let mut sum = vec![0.0f64; k];
    let mut n = 0usize;
    for row in rows.chunks_exact(k.max(1)) {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += f64::from(v);
        }
        n += 1;
    }
    sum.iter().map(|&s| (s / n.max(1) as f64) as f32).collect()
}

/// A dot product with eight independent sums, so the compiler can keep them in SIMD lanes.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, &xv), &yv) in acc.iter_mut().zip(x).zip(y) {
            *s += xv * yv;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Rows scored per block of [`FoldIn::top`]'s scan (the scores live on the stack).
const SCAN_BLOCK: usize = 512;

/// `out[i] = x · row i` of the row-major `rows` (`x.len()` columns), for the first `out.len()`
/// rows: with AVX2 and FMA when the CPU has them and rows are whole 8-float chunks, else
/// [`dot`] (the reference the kernel is tested against).
pub fn dots(rows: &[f32], x: &[f32], out: &mut [f32]) {
    let k = x.len();
    assert!(
        k > 0 && rows.len() >= out.len() * k,
        "dots: {} values do not hold {} rows of {k}",
        rows.len(),
        out.len()
    );
    #[cfg(target_arch = "x86_64")]
    {
        if k.is_multiple_of(8)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (just checked); the shapes were checked above.
            unsafe { avx2_dots(rows, x, out) };
            return;
        }
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(k)) {
        *o = dot(x, row);
    }
}

/// [`dots`] compiled for AVX2: the same code as the portable loop, which the compiler then
/// vectorizes with 8-float lanes (no intrinsics, no pointer arithmetic).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_dots(rows: &[f32], x: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(x.len())) {
        *o = dot(x, row);
    }
}

/// YᵀY of row-major `y` (`k` columns), in f64, row-major k×k (both triangles).
fn gramian(y: &[f32], k: usize) -> Vec<f64> {
    let mut g = vec![0.0f64; k * k];
    let mut row64 = vec![0.0f64; k];
    for row in y.chunks_exact(k) {
        for (d, &v) in row64.iter_mut().zip(row) {
            *d = f64::from(v);
        }
        for a in 0..k {
            let ya = row64[a];
            let out = &mut g[a * k..(a + 1) * k];
            for (o, &yb) in out[a..].iter_mut().zip(&row64[a..]) {
                *o += ya * yb;
            }
        }
    }
    for a in 0..k {
        for b in 0..a {
            g[a * k + b] = g[b * k + a];
        }
    }
    g
}

/// Factors the symmetric `a` (row-major n×n, lower triangle read) as L·Lᵀ in place (L in the
/// lower triangle); false if it is not positive definite.
fn cholesky_in_place(a: &mut [f64], n: usize) -> bool {
    for j in 0..n {
        let mut d = a[j * n + j];
        for p in 0..j {
            d -= a[j * n + p] * a[j * n + p];
        }
        if !(d > 0.0 && d.is_finite()) {
            return false;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for p in 0..j {
                s -= a[i * n + p] * a[j * n + p];
            }
            a[i * n + j] = s / d;
        }
    }
    true
}

/// Overwrites `b` with (L·Lᵀ)⁻¹·b for the factor L in the lower triangle of `l`.
fn cholesky_solve(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let mut s = b[i];
        for p in 0..i {
            s -= l[i * n + p] * b[p];
        }
        b[i] = s / l[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for p in i + 1..n {
            s -= l[p * n + i] * b[p];
        }
        b[i] = s / l[i * n + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(prior: f32) -> FoldInParams {
        FoldInParams {
            regularization: 0.1,
            alpha: 2.0,
            confidence: ConfidenceKind::Linear,
            epsilon: 1.0,
            prior,
        }
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [[4, 2], [2, 3]], b = A·[1, -2] = [0, -4].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        assert!(cholesky_in_place(&mut a, 2));
        let mut b = vec![0.0, -4.0];
        cholesky_solve(&a, 2, &mut b);
        assert!(
            (b[0] - 1.0).abs() < 1e-12 && (b[1] + 2.0).abs() < 1e-12,
            "{b:?}"
        );
        let mut not_pd = vec![1.0, 2.0, 2.0, 1.0];
        assert!(!cholesky_in_place(&mut not_pd, 2));
    }

    #[test]
    fn one_factor_fold_in_matches_the_closed_form() {
        // k = 1: x = (Σ y² + Σ (c−1) y_i² + λ + β)⁻¹ (Σ c y_i + βμ), β = prior · Σ y².
        let y = vec![1.0f32, 2.0, -1.0];
        let f = FoldIn::new(y, 1, params(0.5), Some(&[0.3])).unwrap();
        assert_eq!(f.beta(), 3.0);
        let x = f.solve(&[(1, 1.5), (1, 0.5)]).unwrap();
        let c = 1.0 + 2.0 * 1.5; // the duplicate keeps the larger value
        let want = (c * 2.0 + 3.0 * 0.3) / (6.0 + (c - 1.0) * 4.0 + 0.1 + 3.0);
        assert!((f64::from(x[0]) - want).abs() < 1e-6, "{x:?} vs {want}");
        assert_eq!(f.top(&x, 2, &[1]), vec![(0, x[0]), (2, -x[0])]);
    }

    #[test]
    fn no_evidence_without_prior_gives_zero_factors_like_training() {
        let f = FoldIn::new(vec![1.0, 0.0, 0.0, 1.0], 2, params(0.0), None).unwrap();
        assert_eq!(f.solve(&[]).unwrap(), vec![0.0, 0.0]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let f = FoldIn::new(vec![1.0, 0.0, 0.0, 1.0], 2, params(0.0), None).unwrap();
        assert!(f.solve(&[(2, 1.0)]).is_err());
        assert!(f.solve(&[(0, f32::NAN)]).is_err());
        assert!(FoldIn::new(vec![1.0; 3], 2, params(0.0), None).is_err());
        assert!(FoldIn::new(vec![1.0; 4], 2, params(-1.0), None).is_err());
        assert!(FoldIn::new(vec![1.0; 4], 2, params(0.0), Some(&[1.0])).is_err());
    }

    #[test]
    fn recorded_params_read_field_by_field() {
        let p = FoldInParams::from_recorded(
            &serde_json::json!({"regularization": 0.5, "alpha": 3, "confidence": "log",
                                "epsilon": 2.0, "from_a_later_version": true}),
            1.0,
        )
        .unwrap();
        assert_eq!(
            (p.regularization, p.alpha, p.epsilon, p.prior),
            (0.5, 3.0, 2.0, 1.0)
        );
        assert_eq!(p.confidence, ConfidenceKind::Log);
        let d = FoldInParams::from_recorded(&serde_json::json!({}), 0.0).unwrap();
        assert_eq!(d, FoldInParams::of_model(&ModelConfig::default(), 0.0));
        assert!(
            FoldInParams::from_recorded(&serde_json::json!({"feedback": "explicit"}), 0.0).is_err()
        );
        assert!(FoldInParams::from_recorded(&serde_json::json!({"alpha": "x"}), 0.0).is_err());
    }

    #[test]
    fn events_are_weighted_and_merged_like_the_export() {
        let e = EventValues::from_recorded(
            &serde_json::json!({"event_weights": {"purchase": 5.0}, "aggregate": "sum"}),
        );
        assert_eq!(e.value(Some("purchase"), None), 5.0);
        assert_eq!(e.value(Some("view"), Some(2.0)), 2.0);
        assert_eq!(e.value(None, None), 1.0);
        assert!(e.makes_seen(Some("view")) && e.makes_seen(None));
        let views = EventValues::from_recorded(&serde_json::json!({
            "event_types": {"view": {"seen": false}, "purchase": {"seen": true}}
        }));
        assert!(!views.makes_seen(Some("view")));
        assert!(views.makes_seen(Some("purchase")) && views.makes_seen(Some("cart")));
        assert_eq!(
            e.merge(&[(1, 4.0)], &[(2, 1.0), (1, 5.0), (2, 1.0)]),
            vec![(1, 9.0), (2, 2.0)]
        );
        let max = EventValues {
            aggregate: Aggregate::Max,
            ..EventValues::default()
        };
        assert_eq!(
            max.merge(&[(1, 4.0)], &[(1, 2.0), (3, 1.0)]),
            vec![(1, 4.0), (3, 1.0)]
        );
        let count = EventValues {
            aggregate: Aggregate::Count,
            ..EventValues::default()
        };
        assert_eq!(count.merge(&[], &[(1, 7.0), (1, 7.0)]), vec![(1, 2.0)]);
        // A return cancels a purchase: the item drops out, as its pair drops out of training.
        let returns = EventValues::from_recorded(
            &serde_json::json!({"event_weights": {"purchase": 5.0, "return": -5.0}}),
        );
        let (bought, returned) = (
            returns.value(Some("purchase"), None),
            returns.value(Some("return"), None),
        );
        assert_eq!(
            returns.merge(&[], &[(1, bought), (2, bought), (1, returned)]),
            vec![(2, 5.0)]
        );
    }

    #[test]
    fn the_bounded_scan_keeps_what_sorting_every_score_keeps() {
        // 500 items of 3 factors with many ties (scores repeat every 7 items).
        let k = 3;
        let items: Vec<f32> = (0..500)
            .flat_map(|i| {
                let v = (i % 7) as f32;
                [v, -v / 2.0, 1.0]
            })
            .collect();
        let f = FoldIn::new(items, k, params(0.0), None).unwrap();
        for x in [[1.0f32, 0.0, 0.0], [-1.0, 0.5, 0.1], [0.0, 0.0, 0.0]] {
            for n in [1usize, 5, 10, 64, 499, 600] {
                let exclude = [3u32, 10, 17, 499, 0];
                assert_eq!(
                    f.top(&x, n, &exclude),
                    f.top_reference(&x, n, &exclude),
                    "x = {x:?}, n = {n}"
                );
            }
        }
    }

    #[test]
    fn the_dot_kernel_matches_the_plain_dot() {
        // Pseudo-random rows of 64 and 24 factors (a multiple of 8 and one that is not
        // 16-aligned), values in [-1, 1).
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        for k in [64usize, 24, 5] {
            let rows: Vec<f32> = (0..k * 300).map(|_| next()).collect();
            let x: Vec<f32> = (0..k).map(|_| next()).collect();
            let mut fast = vec![0.0; 300];
            dots(&rows, &x, &mut fast);
            for (i, (f, row)) in fast.iter().zip(rows.chunks_exact(k)).enumerate() {
                let plain = dot(&x, row);
                assert!(
                    (f - plain).abs() <= 1e-5 * (1.0 + plain.abs()),
                    "k = {k}, row {i}: {f} vs {plain}"
                );
            }
        }
    }

    #[test]
    fn mean_rows_and_best() {
        assert_eq!(mean_rows(&[1.0, 2.0, 3.0, 4.0], 2), vec![2.0, 3.0]);
        assert_eq!(
            best(vec![(3, 1.0), (1, 2.0), (2, 1.0), (0, 0.5)], 3),
            vec![(1, 2.0), (2, 1.0), (3, 1.0)]
        );
        assert_eq!(best(vec![(0, 1.0)], 0), vec![]);
    }
}
