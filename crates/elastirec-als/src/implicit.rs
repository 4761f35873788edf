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

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::data::{Csr, Interactions};
use crate::kernels::{axpy, dot, symv};
use crate::{Error, Result};

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

    /// Small random initial factors, reproducible from the seed.
    pub fn initial_factors(&self, rows: usize, stream: u64) -> Vec<f32> {
        let mut state = self.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..rows * self.factors)
            .map(|_| {
                // SplitMix64 step, then a uniform in [0, 0.01).
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 40) as f32 / (1u64 << 24) as f32) * 0.01
            })
            .collect()
    }

    /// Fits the model; `on_iteration(i, loss)` is called after each iteration.
    pub fn fit(
        &self,
        data: &Interactions,
        mut on_iteration: impl FnMut(usize, f64),
    ) -> Result<(Factors, FitReport)> {
        if self.factors == 0 {
            return Err(Error::Internal("factors must be at least 1".into()));
        }
        let start = std::time::Instant::now();
        let k = self.factors;
        // Users are solved first; their start only matters to CG's warm start.
        let mut users = self.initial_factors(data.users.len(), 2);
        let mut items = self.initial_factors(data.items.len(), 1);
        let mut loss = Vec::with_capacity(self.iterations);
        for it in 0..self.iterations {
            self.solve_rows(&data.by_user, &items, &mut users)?;
            self.solve_rows(&data.by_item, &users, &mut items)?;
            let l = implicit_loss(
                &data.by_user,
                &users,
                &items,
                k,
                self.alpha,
                self.regularization,
            );
            on_iteration(it, l);
            loss.push(l);
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
        let k = self.factors;
        let gram = gramian(fixed, k);
        if let Solver::ConjugateGradient { steps } = self.solver {
            // Row-major YᵀY + λI (symmetric, so the column-major Mat reads the same).
            let mut a = vec![0.0f32; k * k];
            for r in 0..k {
                for c in 0..k {
                    a[r * k + c] = gram[(r, c)];
                }
                a[r * k + r] += self.regularization;
            }
            out.par_chunks_mut(k).enumerate().for_each_init(
                || CgScratch::new(k),
                |scratch, (row, x)| {
                    scratch.solve(
                        &a,
                        fixed,
                        matrix.row_indices(row),
                        matrix.row_values(row),
                        self.alpha,
                        steps,
                        x,
                    )
                },
            );
            return if out.iter().all(|v| v.is_finite()) {
                Ok(())
            } else {
                Err(Error::Internal(format!(
                    "conjugate gradient diverged: raise [model] regularization above {}",
                    self.regularization
                )))
            };
        }
        let failures = std::sync::atomic::AtomicUsize::new(0);
        out.par_chunks_mut(k).enumerate().for_each_init(
            || RowSolver::new(k),
            |solver, (row, x)| {
                let ok = solver.solve(
                    &gram,
                    fixed,
                    matrix.row_indices(row),
                    matrix.row_values(row),
                    self.alpha,
                    self.regularization,
                    x,
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
    /// where `a` = YᵀY + λI (row-major) and the sums run over the row's entries; the matrix is
    /// never formed, only applied.
    #[allow(clippy::too_many_arguments)]
    fn solve(
        &mut self,
        a: &[f32],
        fixed: &[f32],
        cols: &[u32],
        values: &[f32],
        alpha: f32,
        steps: usize,
        x: &mut [f32],
    ) {
        let k = x.len();
        if cols.is_empty() {
            x.fill(0.0);
            return;
        }
        let row = |c: u32| &fixed[c as usize * k..(c as usize + 1) * k];
        // r = b − A x
        symv(a, x, &mut self.r);
        self.r.iter_mut().for_each(|v| *v = -*v);
        for (&c, &v) in cols.iter().zip(values) {
            let y = row(c);
            let conf = 1.0 + alpha * v;
            axpy(conf - (conf - 1.0) * dot(y, x), y, &mut self.r);
        }
        self.p.copy_from_slice(&self.r);
        let mut rs_old = dot(&self.r, &self.r);
        for _ in 0..steps {
            if rs_old < 1e-20 {
                break;
            }
            symv(a, &self.p, &mut self.ap);
            for (&c, &v) in cols.iter().zip(values) {
                let y = row(c);
                axpy(alpha * v * dot(y, &self.p), y, &mut self.ap);
            }
            let step = rs_old / dot(&self.p, &self.ap);
            axpy(step, &self.p, x);
            axpy(-step, &self.ap, &mut self.r);
            let rs_new = dot(&self.r, &self.r);
            let beta = rs_new / rs_old;
            for (p, r) in self.p.iter_mut().zip(&self.r) {
                *p = r + beta * *p;
            }
            rs_old = rs_new;
        }
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

    /// Solves `(G + Σ (c−1) y yᵀ + λI) x = Σ c y` over the row's entries; false if singular.
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
    ) -> bool {
        let k = x.len();
        if cols.is_empty() {
            // No observations: the minimizer of the regularized loss is 0 (p = 0 everywhere).
            x.fill(0.0);
            return true;
        }
        self.a.copy_from(gram);
        self.b.fill(0.0);
        for d in 0..k {
            self.a[(d, d)] += lambda;
        }
        for (&c, &r) in cols.iter().zip(values) {
            let y = &fixed[c as usize * k..(c as usize + 1) * k];
            let conf = 1.0 + alpha * r;
            let w = conf - 1.0;
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
        let rhs = MatMut::from_column_major_slice_mut(&mut self.b, k, 1);
        llt::solve::solve_in_place(self.a.as_ref(), rhs, Par::Seq, stack);
        x.copy_from_slice(&self.b);
        x.iter().all(|v| v.is_finite())
    }
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
