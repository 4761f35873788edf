//! Explicit-feedback ALS: ALS-WR (Zhou, Wilkinson, Schreiber, Pan, "Large-scale Parallel
//! Collaborative Filtering for the Netflix Prize", AAIM 2008), optionally with a global mean and
//! user and item biases.
//!
//! The model predicts a rating as `r̂_ui = μ + b_u + b_i + x_u·y_i` (without biases: `x_u·y_i`)
//! and minimizes, over the observed ratings only,
//!
//! ```text
//!   Σ_(u,i) (r_ui − r̂_ui)² + λ (Σ_u n_u (‖x_u‖² + b_u²) + Σ_i n_i (‖y_i‖² + b_i²))
//! ```
//!
//! where `n_u`, `n_i` count a user's and an item's ratings (the "weighted-λ" regularization that
//! Spark MLlib also uses). Each half-step solves, per row, the `(k+1) × (k+1)` normal equations
//! of `[x_u, b_u]` against features `[y_i, 1]` and targets `r_ui − μ − b_i` with a Cholesky
//! factorization (the rows are small and the count-scaled λ keeps them well conditioned).
//! [`crate::reference::explicit_half_step`] solves the same rows densely in f64 for the tests.
//!
//! For serving, [`ExplicitModel::serving_factors`] folds the biases into two extra columns
//! (`[x_u, μ + b_u, 1]·[y_i, 1, b_i] = r̂_ui`), so top-K and the model files are the same as for
//! implicit feedback.

use faer::Mat;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::{MatMut, Par};
use rayon::prelude::*;

use crate::data::{Csr, Interactions};
use crate::implicit::{FitReport, ImplicitAls};
use crate::{Error, Result};

/// Builder for an explicit-feedback (ALS-WR) fit.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplicitAls {
    pub factors: usize,
    pub iterations: usize,
    /// λ, multiplied by each row's number of ratings.
    pub regularization: f32,
    pub seed: u64,
    /// Learn a global mean and user and item biases.
    pub biases: bool,
    /// Stop early once an iteration lowers the training RMSE by less than this fraction.
    pub tolerance: f64,
}

impl Default for ExplicitAls {
    fn default() -> Self {
        ExplicitAls {
            factors: 10,
            iterations: 15,
            regularization: 0.1,
            seed: 42,
            biases: true,
            tolerance: 0.0,
        }
    }
}

/// A fitted explicit model.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplicitModel {
    pub factors: usize,
    /// Row-major user factors `x_u`.
    pub users: Vec<f32>,
    /// Row-major item factors `y_i`.
    pub items: Vec<f32>,
    pub user_bias: Vec<f32>,
    pub item_bias: Vec<f32>,
    /// Global mean μ (0 without biases).
    pub mean: f32,
    /// Predictions are clamped to the training ratings' range.
    pub min_rating: f32,
    pub max_rating: f32,
}

impl ExplicitModel {
    /// The predicted rating of user index `u` for item index `i`, clamped to the rating range.
    pub fn predict(&self, u: usize, i: usize) -> f32 {
        let k = self.factors;
        let x = &self.users[u * k..(u + 1) * k];
        let y = &self.items[i * k..(i + 1) * k];
        let s: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
        (self.mean + self.user_bias[u] + self.item_bias[i] + s)
            .clamp(self.min_rating, self.max_rating)
    }

    /// Root mean squared error over (user index, item index, rating) triples.
    pub fn rmse(&self, ratings: impl IntoIterator<Item = (usize, usize, f32)>) -> f64 {
        let (mut sum, mut n) = (0.0f64, 0usize);
        for (u, i, r) in ratings {
            sum += f64::from(self.predict(u, i) - r).powi(2);
            n += 1;
        }
        (sum / n.max(1) as f64).sqrt()
    }

    /// User and item factors with the biases folded into two extra columns, so that a dot
    /// product is the (unclamped) predicted rating: `[x_u, μ + b_u, 1]` and `[y_i, 1, b_i]`.
    pub fn serving_factors(&self) -> (Vec<f32>, Vec<f32>, usize) {
        let k = self.factors;
        let fold = |rows: &[f32], bias: &[f32], user: bool| -> Vec<f32> {
            let mut out = Vec::with_capacity(bias.len() * (k + 2));
            for (r, &b) in bias.iter().enumerate() {
                out.extend_from_slice(&rows[r * k..(r + 1) * k]);
                if user {
                    out.extend([self.mean + b, 1.0]);
                } else {
                    out.extend([1.0, b]);
                }
            }
            out
        };
        (
            fold(&self.users, &self.user_bias, true),
            fold(&self.items, &self.item_bias, false),
            k + 2,
        )
    }
}

impl ExplicitAls {
    /// Fits the model; `on_iteration(i, rmse)` is called with the training RMSE after each
    /// iteration.
    pub fn fit(
        &self,
        data: &Interactions,
        mut on_iteration: impl FnMut(usize, f64),
    ) -> Result<(ExplicitModel, FitReport)> {
        if self.factors == 0 {
            return Err(Error::Internal("factors must be at least 1".into()));
        }
        let start = std::time::Instant::now();
        let values = &data.by_user.values;
        let (mut min_rating, mut max_rating) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in values {
            min_rating = min_rating.min(v);
            max_rating = max_rating.max(v);
        }
        if values.is_empty() {
            (min_rating, max_rating) = (0.0, 0.0);
        }
        let mean = if self.biases && !values.is_empty() {
            (values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64) as f32
        } else {
            0.0
        };
        // Small random starts (the same generator as the implicit model), scaled up so the first
        // half-step sees features of a sensible size.
        let init = ImplicitAls::default()
            .with_factors(self.factors)
            .with_seed(self.seed);
        let start_scale = 100.0 / (self.factors as f32).sqrt();
        let mut model = ExplicitModel {
            factors: self.factors,
            users: init.initial_factors(data.users.len(), 2),
            items: init
                .initial_factors(data.items.len(), 1)
                .iter()
                .map(|v| v * start_scale)
                .collect(),
            user_bias: vec![0.0; data.users.len()],
            item_bias: vec![0.0; data.items.len()],
            mean,
            min_rating,
            max_rating,
        };
        let mut loss = Vec::with_capacity(self.iterations);
        for it in 0..self.iterations {
            self.half_step(
                &data.by_user,
                &model.items,
                &model.item_bias,
                mean,
                &mut model.users,
                &mut model.user_bias,
            )?;
            self.half_step(
                &data.by_item,
                &model.users,
                &model.user_bias,
                mean,
                &mut model.items,
                &mut model.item_bias,
            )?;
            let by_user = &data.by_user;
            let rmse = model.rmse((0..by_user.rows()).flat_map(|u| {
                by_user
                    .row_indices(u)
                    .iter()
                    .zip(by_user.row_values(u))
                    .map(move |(&i, &r)| (u, i as usize, r))
            }));
            on_iteration(it, rmse);
            let converged = self.tolerance > 0.0
                && loss
                    .last()
                    .is_some_and(|&prev: &f64| prev - rmse <= self.tolerance * prev);
            loss.push(rmse);
            if converged {
                break;
            }
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !(finite(&model.users)
            && finite(&model.items)
            && finite(&model.user_bias)
            && finite(&model.item_bias))
        {
            return Err(Error::Internal(
                "training produced non-finite factors: raise [model] regularization".into(),
            ));
        }
        Ok((
            model,
            FitReport {
                loss,
                seconds: start.elapsed().as_secs_f64(),
            },
        ))
    }

    /// One half-step: solves every row's `[x, b]` against the fixed side's `[y, 1]` and targets
    /// `r − μ − b_fixed` (without biases: `x` against `y` and `r`, and the biases stay 0).
    pub fn half_step(
        &self,
        matrix: &Csr,
        fixed: &[f32],
        fixed_bias: &[f32],
        mean: f32,
        out: &mut [f32],
        out_bias: &mut [f32],
    ) -> Result<()> {
        let k = self.factors;
        let d = k + usize::from(self.biases);
        let failures = std::sync::atomic::AtomicUsize::new(0);
        out.par_chunks_mut(k)
            .zip(out_bias.par_iter_mut())
            .enumerate()
            .for_each_init(
                || RowSolver::new(d),
                |solver, (row, (x, b))| {
                    let ok = solver.solve(
                        fixed,
                        fixed_bias,
                        mean,
                        matrix.row_indices(row),
                        matrix.row_values(row),
                        self.regularization,
                        self.biases,
                        x,
                        b,
                    );
                    if !ok {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                },
            );
        match failures.into_inner() {
            0 => Ok(()),
            n => Err(Error::Internal(format!(
                "{n} rows had a singular system: raise [model] regularization above {}",
                self.regularization
            ))),
        }
    }
}

/// Per-thread scratch for one row's normal equations.
struct RowSolver {
    a: Mat<f32>,
    b: Vec<f32>,
    mem: MemBuffer,
}

impl RowSolver {
    fn new(d: usize) -> Self {
        let req = llt::factor::cholesky_in_place_scratch::<f32>(d, Par::Seq, Default::default())
            .or(llt::solve::solve_in_place_scratch::<f32>(d, 1, Par::Seq));
        RowSolver {
            a: Mat::zeros(d, d),
            b: vec![0.0; d],
            mem: MemBuffer::new(req),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn solve(
        &mut self,
        fixed: &[f32],
        fixed_bias: &[f32],
        mean: f32,
        cols: &[u32],
        values: &[f32],
        lambda: f32,
        biases: bool,
        x: &mut [f32],
        bias: &mut f32,
    ) -> bool {
        let k = x.len();
        let d = self.b.len();
        if cols.is_empty() {
            x.fill(0.0);
            *bias = 0.0;
            return true;
        }
        let reg = lambda * cols.len() as f32;
        for col in 0..d {
            for row in col..d {
                self.a[(row, col)] = if row == col { reg } else { 0.0 };
            }
        }
        self.b.fill(0.0);
        for (&c, &r) in cols.iter().zip(values) {
            let y = &fixed[c as usize * k..(c as usize + 1) * k];
            let t = if biases {
                r - mean - fixed_bias[c as usize]
            } else {
                r
            };
            // Lower triangle of Σ z zᵀ with z = [y, 1]; b += t z.
            for col in 0..k {
                let yc = y[col];
                for (row, &yr) in y.iter().enumerate().skip(col) {
                    self.a[(row, col)] += yr * yc;
                }
                self.b[col] += t * yc;
            }
            if biases {
                for (col, &yc) in y.iter().enumerate() {
                    self.a[(k, col)] += yc;
                }
                self.a[(k, k)] += 1.0;
                self.b[k] += t;
            }
        }
        let stack = MemStack::new(&mut self.mem);
        if llt::factor::cholesky_in_place(
            self.a.as_mut(),
            Default::default(),
            Par::Seq,
            stack,
            Default::default(),
        )
        .is_err()
        {
            return false;
        }
        let rhs = MatMut::from_column_major_slice_mut(&mut self.b, d, 1);
        llt::solve::solve_in_place(self.a.as_ref(), rhs, Par::Seq, stack);
        x.copy_from_slice(&self.b[..k]);
        *bias = if biases { self.b[k] } else { 0.0 };
        self.b.iter().all(|v| v.is_finite())
    }
}
