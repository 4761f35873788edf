//! Implicit-feedback ALS: Hu, Koren, Volinsky, "Collaborative Filtering for Implicit Feedback
//! Datasets", ICDM 2008.
//!
//! Names map to the paper: `r_ui` is the value in the training export, the preference
//! `p_ui = 1` for every observed pair (0 otherwise), the confidence `c_ui = 1 + alpha·r_ui`
//! (eq. 2; 1 for unobserved pairs), `x_u` the user factors (rows of X), `y_i` the item factors
//! (rows of Y), `lambda` the regularization. Each half-step solves, for every user (eq. 4),
//!
//! ```text
//!   x_u = (YᵀY + Yᵀ(Cᵘ − I)Y + λI)⁻¹ · YᵀCᵘp(u)
//! ```
//!
//! where YᵀY is computed once per half-step and `Yᵀ(Cᵘ − I)Y` only touches the user's items, and
//! symmetrically for items. Two solvers: [`Solver::Cholesky`] forms the k×k system and factors it
//! (O(n_u·k² + k³) per row, exact); [`Solver::ConjugateGradient`] runs a few CG steps warm-started
//! from the previous iteration's row without forming the matrix (O(steps·(n_u·k + k²)) per row),
//! as Takács, Pilászy, Tikk, "Applications of the conjugate gradient method for implicit feedback
//! collaborative filtering", RecSys 2011. The slow dense reference in [`crate::reference`] checks
//! the exact solver, and CG run to convergence must agree with it.
//!
//! [`Confidence::Log`] replaces the confidence with `1 + alpha·ln(1 + r_ui/epsilon)` (the paper's
//! alternative, eq. 6).
//!
//! Each iteration solves the items, then the users (Spark MLlib's order, unlike `implicit`'s users
//! then items): the user factors that score the lists are solved against the final item factors.
//! It measured slightly better on the inner validation split of MovieLens 100K (bench/README.md).
//!
//! The loss costs no extra sweep: for a fixed user row `x` with normal equations `A x = b`
//! (`A = YᵀCᵘY + λI`, `b = YᵀCᵘp(u)`), its part of the objective is
//! `Σ_i c_ui (p_ui − x·y_i)² + λ‖x‖² = Σ_i c_ui p_ui − 2 bᵀx + xᵀA x`, and `A x = b − r` for the
//! solver's residual `r`; CG already computes every `x·y_i` that `bᵀx` needs. The user half-step
//! therefore returns the objective of the new factors, to which `λ‖Y‖²` is added.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

use std::borrow::Cow;

use elastirec_core::rng::SplitMix64;

use crate::data::{Csr, Interactions};
use crate::kernels::{PassKind, RowKernel, axpy, dot};
use crate::{Error, Result};

/// How an observed value becomes a confidence `c_ui`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Confidence {
    /// `c = 1 + alpha·r` (Hu et al., eq. 2).
    Linear,
    /// `c = 1 + alpha·ln(1 + r/epsilon)` (Hu et al., eq. 6), for values with a long tail.
    Log { epsilon: f32 },
}

/// How each row's least-squares problem is solved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solver {
    /// Exact: a Cholesky factorization of the row's normal equations.
    Cholesky,
    /// `steps` conjugate-gradient steps from the row's previous value.
    ConjugateGradient { steps: usize },
}

/// Learned factors, row-major: row `r` of a matrix is `[r * factors .. (r + 1) * factors]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    pub factors: usize,
    /// One row per user index of the interactions.
    pub users: Vec<f32>,
    /// One row per item index of the interactions.
    pub items: Vec<f32>,
}

impl Factors {
    /// Row `r` of the user factors.
    pub fn user(&self, r: usize) -> &[f32] {
        &self.users[r * self.factors..(r + 1) * self.factors]
    }

    /// Row `r` of the item factors.
    pub fn item(&self, r: usize) -> &[f32] {
        &self.items[r * self.factors..(r + 1) * self.factors]
    }

    /// Whether every factor is a finite number.
    pub fn all_finite(&self) -> bool {
        self.users.iter().chain(&self.items).all(|x| x.is_finite())
    }
}

/// What a fit did, iteration by iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct FitReport {
    /// Loss after each iteration (see [`implicit_loss`]).
    pub loss: Vec<f64>,
    pub seconds: f64,
}

/// Builder for an implicit-feedback ALS fit.
#[derive(Debug, Clone, PartialEq)]
pub struct ImplicitAls {
    pub factors: usize,
    pub iterations: usize,
    pub regularization: f32,
    pub alpha: f32,
    pub seed: u64,
    pub solver: Solver,
    pub confidence: Confidence,
    /// Stop early once an iteration lowers the loss by less than this fraction (0: never).
    pub tolerance: f64,
    /// Use the CPU's SIMD kernels when it has them (false: the portable kernels only).
    pub simd: bool,
}

impl Default for ImplicitAls {
    fn default() -> Self {
        ImplicitAls {
            factors: 32,
            iterations: 15,
            regularization: 0.05,
            alpha: 1.0,
            seed: 42,
            solver: Solver::Cholesky,
            confidence: Confidence::Linear,
            tolerance: 0.0,
            simd: true,
        }
    }
}

impl ImplicitAls {
    pub fn with_factors(mut self, factors: usize) -> Self {
        self.factors = factors;
        self
    }
    pub fn with_iterations(mut self, iterations: usize) -> Self {
        self.iterations = iterations;
        self
    }
    pub fn with_regularization(mut self, regularization: f32) -> Self {
        self.regularization = regularization;
        self
    }
    pub fn with_alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    pub fn with_solver(mut self, solver: Solver) -> Self {
        self.solver = solver;
        self
    }
    pub fn with_confidence(mut self, confidence: Confidence) -> Self {
        self.confidence = confidence;
        self
    }
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }
    pub fn with_simd(mut self, simd: bool) -> Self {
        self.simd = simd;
        self
    }

    /// The weights `w` with `c − 1 = alpha·w` for a matrix's stored values.
    pub fn weights<'a>(&self, matrix: &'a Csr) -> Cow<'a, [f32]> {
        match self.confidence {
            Confidence::Linear => Cow::Borrowed(&matrix.values),
            Confidence::Log { epsilon } => Cow::Owned(
                matrix
                    .values
                    .par_iter()
                    .map(|&r| (1.0 + r / epsilon).ln())
                    .collect(),
            ),
        }
    }

    /// Small random initial factors, reproducible from the seed.
    pub fn initial_factors(&self, rows: usize, stream: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(self.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (0..rows * self.factors)
            // The top 24 bits as a uniform in [0, 0.01).
            .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 0.01)
            .collect()
    }

    /// Fits the model; `on_iteration(i, loss)` is called after each iteration.
    ///
    /// The result depends only on the data, the parameters and the number of rayon threads
    /// (through the summation order of YᵀY), not on how rows are scheduled.
    pub fn fit(
        &self,
        data: &Interactions,
        mut on_iteration: impl FnMut(usize, f64),
    ) -> Result<(Factors, FitReport)> {
        if self.factors == 0 {
            return Err(Error::Internal("factors must be at least 1".into()));
        }
        if let Confidence::Log { epsilon } = self.confidence
            && !(epsilon.is_finite() && epsilon > 0.0)
        {
            return Err(Error::Internal(format!(
                "log confidence needs epsilon > 0, got {epsilon}"
            )));
        }
        let start = std::time::Instant::now();
        let k = self.factors;
        // Items are solved first (from the random users); the items' start only matters to CG's
        // warm start.
        let mut users = self.initial_factors(data.users.len(), 2);
        let mut items = self.initial_factors(data.items.len(), 1);
        let user_weights = self.weights(&data.by_user);
        let item_weights = self.weights(&data.by_item);
        let cells = (data.users.len().max(1) * data.items.len().max(1)) as f64;
        let mut loss: Vec<f64> = Vec::with_capacity(self.iterations);
        for it in 0..self.iterations {
            // Items first, users last (Spark MLlib's order): the user factors that score the
            // lists are then solved against the final item factors, as a fold-in would be.
            self.half_step(&data.by_item, &item_weights, &users, &mut items)?;
            let user_part = self.half_step(&data.by_user, &user_weights, &items, &mut users)?;
            let item_reg: f64 = items
                .par_chunks(4096)
                .map(|c| c.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>())
                .collect::<Vec<f64>>()
                .iter()
                .sum();
            let l = (user_part + f64::from(self.regularization) * item_reg) / cells;
            on_iteration(it, l);
            let converged = self.tolerance > 0.0
                && loss
                    .last()
                    .is_some_and(|&prev| prev - l <= self.tolerance * prev.abs());
            loss.push(l);
            if converged {
                break;
            }
        }
        let factors = Factors {
            factors: k,
            users,
            items,
        };
        if !factors.all_finite() {
            return Err(Error::Internal(
                "training produced non-finite factors: lower alpha or raise regularization".into(),
            ));
        }
        Ok((
            factors,
            FitReport {
                loss,
                seconds: start.elapsed().as_secs_f64(),
            },
        ))
    }

    /// One half-step: solves every row of `out` given the fixed factors `fixed` (eq. 4).
    pub fn solve_rows(&self, matrix: &Csr, fixed: &[f32], out: &mut [f32]) -> Result<()> {
        let w = self.weights(matrix);
        self.half_step(matrix, &w, fixed, out).map(|_| ())
    }

    /// One half-step with precomputed weights (`c − 1 = alpha·w`); returns the solved rows'
    /// part of the objective, `Σ_rows (Σ_cols c (p − x·y)² + λ‖x‖²)`, summed in row order.
    pub fn half_step(
        &self,
        matrix: &Csr,
        w: &[f32],
        fixed: &[f32],
        out: &mut [f32],
    ) -> Result<f64> {
        let k = self.factors;
        let fixed_rows = fixed.len() / k;
        if matrix.indices.iter().any(|&c| c as usize >= fixed_rows)
            || out.len() != matrix.rows() * k
            || w.len() != matrix.nnz()
        {
            return Err(Error::Internal(format!(
                "half-step shapes do not match: {} rows to solve, {} fixed rows",
                out.len() / k,
                fixed_rows
            )));
        }
        let gram = gramian(fixed, k);
        let mut losses = vec![0.0f64; matrix.rows()];
        let alpha = self.alpha;
        if let Solver::ConjugateGradient { steps } = self.solver {
            // Row-major YᵀY + λI (symmetric, so the column-major Mat reads the same).
            let mut a = vec![0.0f32; k * k];
            for r in 0..k {
                for c in 0..k {
                    a[r * k + c] = gram[(r, c)];
                }
                a[r * k + r] += self.regularization;
            }
            let kernel = RowKernel::detect(k, self.simd);
            out.par_chunks_mut(k)
                .zip(losses.par_iter_mut())
                .enumerate()
                .with_min_len(8)
                .for_each_init(
                    || CgScratch::new(k),
                    |scratch, (row, (x, loss))| {
                        let range = matrix.indptr[row]..matrix.indptr[row + 1];
                        // SAFETY: every column of the matrix was checked above.
                        *loss = unsafe {
                            scratch.solve(
                                kernel,
                                &a,
                                fixed,
                                &matrix.indices[range.clone()],
                                &w[range],
                                alpha,
                                steps,
                                x,
                            )
                        }
                    },
                );
            return if out.iter().all(|v| v.is_finite()) {
                Ok(losses.iter().sum())
            } else {
                Err(Error::Internal(format!(
                    "conjugate gradient diverged: raise [model] regularization above {}",
                    self.regularization
                )))
            };
        }
        let failures = std::sync::atomic::AtomicUsize::new(0);
        out.par_chunks_mut(k)
            .zip(losses.par_iter_mut())
            .enumerate()
            .for_each_init(
                || RowSolver::new(k),
                |solver, (row, (x, loss))| {
                    let range = matrix.indptr[row]..matrix.indptr[row + 1];
                    match solver.solve(
                        &gram,
                        fixed,
                        &matrix.indices[range.clone()],
                        &w[range],
                        alpha,
                        self.regularization,
                        x,
                    ) {
                        Some(l) => *loss = l,
                        None => {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                },
            );
        match failures.into_inner() {
            0 => Ok(losses.iter().sum()),
            n => Err(Error::Internal(format!(
                "{n} rows had a singular system: raise [model] regularization above {}",
                self.regularization
            ))),
        }
    }
}

/// Per-thread vectors of the conjugate-gradient solver.
struct CgScratch {
    r: Vec<f32>,
    p: Vec<f32>,
    ap: Vec<f32>,
}

impl CgScratch {
    fn new(k: usize) -> Self {
        CgScratch {
            r: vec![0.0; k],
            p: vec![0.0; k],
            ap: vec![0.0; k],
        }
    }

    /// Improves `x` towards the solution of `(A + Σ (c−1) y yᵀ) x = Σ c y` with `steps` CG steps,
    /// where `a` = YᵀY + λI (row-major) and the sums run over the row's entries (`c − 1 =
    /// alpha·w`); the matrix is never formed, only applied. Returns the row's part of the
    /// objective at the new `x` (see the module docs).
    ///
    /// # Safety
    /// Every entry of `cols` must index a row of `fixed` (`half_step` checks the whole matrix).
    #[allow(clippy::too_many_arguments)]
    unsafe fn solve(
        &mut self,
        kernel: RowKernel,
        a: &[f32],
        fixed: &[f32],
        cols: &[u32],
        w: &[f32],
        alpha: f32,
        steps: usize,
        x: &mut [f32],
    ) -> f64 {
        if cols.is_empty() {
            // No observations: the minimizer of the regularized loss is 0 (p = 0 everywhere).
            x.fill(0.0);
            return 0.0;
        }
        // Σ c p² over the row: p = 1 on observed cells.
        let sum_c =
            cols.len() as f64 + f64::from(alpha) * w.iter().map(|&v| f64::from(v)).sum::<f64>();
        // r = b − A x, and bᵀx on the way.
        kernel.symv(a, x, &mut self.ap);
        for (r, ax) in self.r.iter_mut().zip(&self.ap) {
            *r = -ax;
        }
        // SAFETY (both sweeps): the caller guarantees every column indexes a row of `fixed`.
        let mut bx = f64::from(unsafe {
            kernel.pass_checked_cols(PassKind::Residual, fixed, cols, w, alpha, x, &mut self.r)
        });
        self.p.copy_from_slice(&self.r);
        let mut rs_old = dot(&self.r, &self.r);
        for _ in 0..steps {
            if rs_old < 1e-20 {
                break;
            }
            kernel.symv(a, &self.p, &mut self.ap);
            let bp = unsafe {
                kernel.pass_checked_cols(
                    PassKind::Product,
                    fixed,
                    cols,
                    w,
                    alpha,
                    &self.p,
                    &mut self.ap,
                )
            };
            let pap = dot(&self.p, &self.ap);
            if pap <= 0.0 || !pap.is_finite() {
                break;
            }
            let step = rs_old / pap;
            axpy(step, &self.p, x);
            axpy(-step, &self.ap, &mut self.r);
            bx += f64::from(step) * f64::from(bp);
            let rs_new = dot(&self.r, &self.r);
            let beta = rs_new / rs_old;
            for (p, r) in self.p.iter_mut().zip(&self.r) {
                *p = r + beta * *p;
            }
            rs_old = rs_new;
        }
        // Σ c p² − 2bᵀx + xᵀA x with A x = b − r.
        sum_c - bx - f64::from(dot(x, &self.r))
    }
}

/// YᵀY for row-major `y` with `k` columns, as a dense k×k matrix.
pub fn gramian(y: &[f32], k: usize) -> Mat<f32> {
    let rows = y.len() / k;
    let y = MatRef::from_row_major_slice(y, rows, k);
    let mut g = Mat::<f32>::zeros(k, k);
    matmul(
        g.as_mut(),
        Accum::Replace,
        y.transpose(),
        y,
        1.0,
        Par::rayon(0),
    );
    g
}

/// Per-thread scratch for one row's normal equations.
struct RowSolver {
    a: Mat<f32>,
    b: Vec<f32>,
    mem: MemBuffer,
}

impl RowSolver {
    fn new(k: usize) -> Self {
        let req = llt::factor::cholesky_in_place_scratch::<f32>(k, Par::Seq, Default::default())
            .or(llt::solve::solve_in_place_scratch::<f32>(k, 1, Par::Seq));
        RowSolver {
            a: Mat::zeros(k, k),
            b: vec![0.0; k],
            mem: MemBuffer::new(req),
        }
    }

    /// Forms `A = G + Σ (c−1) y yᵀ + λI` (lower triangle) and `b = Σ c y` over the row's
    /// entries (`c − 1 = alpha·w`) and factors A in place; false if A is not positive definite.
    #[allow(clippy::too_many_arguments)]
    fn factor(
        &mut self,
        gram: &Mat<f32>,
        fixed: &[f32],
        cols: &[u32],
        values: &[f32],
        alpha: f32,
        lambda: f32,
    ) -> bool {
        let k = self.b.len();
        self.a.copy_from(gram);
        self.b.fill(0.0);
        for d in 0..k {
            self.a[(d, d)] += lambda;
        }
        for (&c, &r) in cols.iter().zip(values) {
            let y = &fixed[c as usize * k..(c as usize + 1) * k];
            let w = alpha * r;
            let conf = 1.0 + w;
            // Lower triangle only: the Cholesky factorization reads nothing else.
            for col in 0..k {
                let wy = w * y[col];
                for (row, &yr) in y.iter().enumerate().skip(col) {
                    self.a[(row, col)] += wy * yr;
                }
                self.b[col] += conf * y[col];
            }
        }
        let stack = MemStack::new(&mut self.mem);
        llt::factor::cholesky_in_place(
            self.a.as_mut(),
            Default::default(),
            Par::Seq,
            stack,
            Default::default(),
        )
        .is_ok()
    }

    /// Overwrites `rhs` with A⁻¹·rhs for the factored A.
    fn solve_factored(&mut self, rhs: &mut [f32]) {
        let k = rhs.len();
        let stack = MemStack::new(&mut self.mem);
        let rhs = MatMut::from_column_major_slice_mut(rhs, k, 1);
        llt::solve::solve_in_place(self.a.as_ref(), rhs, Par::Seq, stack);
    }

    /// Solves `(G + Σ (c−1) y yᵀ + λI) x = Σ c y` over the row's entries (`c − 1 = alpha·w`);
    /// returns the row's part of the objective, or `None` if the system is singular.
    #[allow(clippy::too_many_arguments)]
    fn solve(
        &mut self,
        gram: &Mat<f32>,
        fixed: &[f32],
        cols: &[u32],
        values: &[f32],
        alpha: f32,
        lambda: f32,
        x: &mut [f32],
    ) -> Option<f64> {
        if cols.is_empty() {
            // No observations: the minimizer of the regularized loss is 0 (p = 0 everywhere).
            x.fill(0.0);
            return Some(0.0);
        }
        if !self.factor(gram, fixed, cols, values, alpha, lambda) {
            return None;
        }
        let sum_c: f64 = values
            .iter()
            .map(|&r| 1.0 + f64::from(alpha) * f64::from(r))
            .sum();
        x.copy_from_slice(&self.b);
        self.solve_factored(x);
        // Σ c p² − 2bᵀx + xᵀA x with A x = b.
        let bx: f64 = self
            .b
            .iter()
            .zip(x.iter())
            .map(|(b, x)| f64::from(*b) * f64::from(*x))
            .sum();
        x.iter().all(|v| v.is_finite()).then_some(sum_c - bx)
    }
}

impl ImplicitAls {
    /// "Because you liked": how much each of a user's observed items adds to the user's score
    /// of item `target` (Hu et al. 2008, section 5). With `W = (YᵀCᵘY + λI)⁻¹` the exact user
    /// factors are `x_u = W Σ_i c_ui y_i`, so `x_u·y_j = Σ_i c_ui (W y_j)·y_i`: item `i`
    /// contributes `c_ui (W y_j)·y_i`. `cols`/`values` are the user's observed items and values;
    /// returns the `n` largest contributions (item index, contribution), largest first. The
    /// contributions of all observed items sum to the exact solve's score (CG's differs by its
    /// few steps' residual).
    pub fn explain(
        &self,
        items: &[f32],
        cols: &[u32],
        values: &[f32],
        target: u32,
        n: usize,
    ) -> Result<Vec<(u32, f32)>> {
        let k = self.factors;
        let rows = items.len() / k.max(1);
        if k == 0 || target as usize >= rows || cols.iter().any(|&c| c as usize >= rows) {
            return Err(Error::Internal(format!(
                "explain: item index out of range ({rows} items)"
            )));
        }
        let w: Vec<f32> = match self.confidence {
            Confidence::Linear => values.to_vec(),
            Confidence::Log { epsilon } => {
                values.iter().map(|&r| (1.0 + r / epsilon).ln()).collect()
            }
        };
        let gram = gramian(items, k);
        let mut solver = RowSolver::new(k);
        if !solver.factor(&gram, items, cols, &w, self.alpha, self.regularization) {
            return Err(Error::Internal(format!(
                "explain: singular system: raise [model] regularization above {}",
                self.regularization
            )));
        }
        let t = target as usize;
        let mut z = items[t * k..(t + 1) * k].to_vec();
        solver.solve_factored(&mut z);
        let mut out: Vec<(u32, f32)> = cols
            .iter()
            .zip(&w)
            .map(|(&c, &wi)| {
                let y = &items[c as usize * k..(c as usize + 1) * k];
                (c, (1.0 + self.alpha * wi) * dot(&z, y))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(n);
        Ok(out)
    }
}

/// Similar items: the `n` items of highest cosine similarity to each item (itself excluded), by
/// the same blocked GEMM + bounded selection as top-K on row-normalized item factors.
pub fn similar_items(items: &[f32], k: usize, n: usize) -> Vec<Vec<(u32, f32)>> {
    let rows = items.len() / k.max(1);
    let mut unit = items.to_vec();
    for row in unit.chunks_mut(k.max(1)) {
        let norm = dot(row, row).sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    let itself = Csr {
        indptr: (0..=rows).collect(),
        indices: (0..rows as u32).collect(),
        values: vec![1.0; rows],
    };
    crate::topk::top_k_all(&unit, &unit, k, &itself, n)
}

/// The objective of Hu et al. (eq. 3) divided by the number of user–item cells:
/// `Σ_u,i c_ui (p_ui − x_u·y_i)² + λ(Σ‖x_u‖² + Σ‖y_i‖²)`.
///
/// Computed without visiting unobserved cells: `Σ_i (x_u·y_i)² = x_uᵀ(YᵀY)x_u`, plus the
/// observed cells' correction `c(1 − s)² − s²`.
pub fn implicit_loss(
    by_user: &Csr,
    users: &[f32],
    items: &[f32],
    k: usize,
    alpha: f32,
    lambda: f32,
) -> f64 {
    let gram = gramian(items, k);
    let rows = by_user.rows();
    let total: f64 = (0..rows)
        .into_par_iter()
        .map(|u| {
            let x = &users[u * k..(u + 1) * k];
            let mut all = 0.0f64;
            for a in 0..k {
                let mut gx = 0.0f64;
                for b in 0..k {
                    gx += f64::from(gram[(a, b)]) * f64::from(x[b]);
                }
                all += f64::from(x[a]) * gx;
            }
            let mut observed = 0.0f64;
            for (&i, &r) in by_user.row_indices(u).iter().zip(by_user.row_values(u)) {
                let y = &items[i as usize * k..(i as usize + 1) * k];
                let s: f64 = x
                    .iter()
                    .zip(y)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                let c = 1.0 + f64::from(alpha) * f64::from(r);
                observed += c * (1.0 - s).powi(2) - s * s;
            }
            all + observed
        })
        .sum();
    let reg: f64 = users
        .iter()
        .chain(items)
        .map(|v| f64::from(*v) * f64::from(*v))
        .sum::<f64>()
        * f64::from(lambda);
    let cells = (rows.max(1) * (items.len() / k).max(1)) as f64;
    (total + reg) / cells
}
