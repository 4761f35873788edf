//! Slow, obviously-correct references for the fast kernels, used by tests.
//!
//! Everything here is dense and in f64: the implicit-ALS half-step builds the full confidence
//! diagonal over all items and solves with Gaussian elimination; top-K scores every item and
//! sorts; a fold-in is the half-step of one row, with its prior.

use crate::data::Csr;

/// Solves `a x = b` (n×n, row-major) by Gaussian elimination with partial pivoting.
pub fn solve_dense(mut a: Vec<f64>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot =
            (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))?;
        if a[pivot * n + col].abs() < 1e-12 {
            return None;
        }
        for j in 0..n {
            a.swap(col * n + j, pivot * n + j);
        }
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row * n + col] / a[col * n + col];
            for j in col..n {
                a[row * n + j] -= f * a[col * n + j];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|j| a[row * n + j] * x[j]).sum();
        x[row] = (b[row] - s) / a[row * n + row];
    }
    Some(x)
}

/// `(Σ_i c_i y_i y_iᵀ, Σ_i c_i p_i y_i)` over every row `y_i` of the row-major `fixed` (`k`
/// columns), dense in f64: the normal equations of one implicit-ALS row before λ.
fn normal_equations(fixed: &[f32], k: usize, c: &[f64], p: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut a = vec![0.0f64; k * k];
    let mut b = vec![0.0f64; k];
    for (i, y) in fixed.chunks_exact(k).enumerate() {
        for r in 0..k {
            for s in 0..k {
                a[r * k + s] += c[i] * f64::from(y[r]) * f64::from(y[s]);
            }
            b[r] += c[i] * p[i] * f64::from(y[r]);
        }
    }
    (a, b)
}

/// One implicit-ALS half-step, dense: for each row u,
/// `x_u = (Σ_i c_ui y_i y_iᵀ + λI)⁻¹ Σ_i c_ui p_ui y_i` over all `fixed_rows` items.
pub fn implicit_half_step(
    matrix: &Csr,
    fixed: &[f32],
    fixed_rows: usize,
    k: usize,
    alpha: f32,
    lambda: f32,
) -> Vec<f32> {
    let mut out = vec![0.0f32; matrix.rows() * k];
    for u in 0..matrix.rows() {
        let mut c = vec![1.0f64; fixed_rows];
        let mut p = vec![0.0f64; fixed_rows];
        for (&i, &r) in matrix.row_indices(u).iter().zip(matrix.row_values(u)) {
            c[i as usize] = 1.0 + f64::from(alpha) * f64::from(r);
            p[i as usize] = 1.0;
        }
        let (mut a, b) = normal_equations(&fixed[..fixed_rows * k], k, &c, &p);
        for d in 0..k {
            a[d * k + d] += f64::from(lambda);
        }
        if matrix.row_indices(u).is_empty() {
            continue;
        }
        if let Some(x) = solve_dense(a, b) {
            for (dst, v) in out[u * k..(u + 1) * k].iter_mut().zip(x) {
                *dst = v as f32;
            }
        }
    }
    out
}

/// One user folded in, dense in f64 over every item (the fold-in's slow reference, see
/// `elastirec_core::foldin`): `c_i = 1 + alpha·w_i` on observed items (1 elsewhere), `p_i = 1`
/// on observed items (0 elsewhere), `β = prior · tr(YᵀY)/k`, and
/// `x = (Σ_i c_i y_i y_iᵀ + (λ + β)I)⁻¹ (Σ_i c_i p_i y_i + β μ)`. `observed` holds (item, w)
/// with distinct items; `None` if the system is singular.
#[allow(clippy::too_many_arguments)]
pub fn fold_in(
    fixed: &[f32],
    k: usize,
    observed: &[(u32, f32)],
    alpha: f32,
    lambda: f32,
    prior: f32,
    mean_user: &[f32],
) -> Option<Vec<f32>> {
    let rows = fixed.len() / k;
    let mut c = vec![1.0f64; rows];
    let mut p = vec![0.0f64; rows];
    for &(i, w) in observed {
        c[i as usize] = 1.0 + f64::from(alpha) * f64::from(w);
        p[i as usize] = 1.0;
    }
    let trace: f64 = fixed.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let beta = f64::from(prior) * trace / k as f64;
    let (mut a, mut b) = normal_equations(fixed, k, &c, &p);
    for d in 0..k {
        a[d * k + d] += f64::from(lambda) + beta;
        b[d] += beta * f64::from(mean_user[d]);
    }
    solve_dense(a, b).map(|x| x.into_iter().map(|v| v as f32).collect())
}

/// Top-K by scoring every item and sorting: (score desc, item asc), seen items excluded.
pub fn top_k(users: &[f32], items: &[f32], k: usize, seen: &Csr, n: usize) -> Vec<Vec<(u32, f32)>> {
    let item_rows = items.len() / k;
    (0..users.len() / k)
        .map(|u| {
            let x = &users[u * k..(u + 1) * k];
            let mut scored: Vec<(u32, f32)> = (0..item_rows)
                .filter(|&i| u >= seen.rows() || !seen.contains(u, i as u32))
                .map(|i| {
                    let y = &items[i * k..(i + 1) * k];
                    (i as u32, x.iter().zip(y).map(|(a, b)| a * b).sum())
                })
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            scored.truncate(n);
            scored
        })
        .collect()
}

/// One explicit (ALS-WR) half-step, dense in f64: for each row, `[x, b]` minimizing
/// `Σ_i (t_i − [y_i, 1]·[x, b])² + λ n ‖[x, b]‖²` with `t_i = r_i − μ − b_i` (without biases:
/// `x` against `y_i` and `r_i`). Returns the rows and their biases.
#[allow(clippy::too_many_arguments)]
pub fn explicit_half_step(
    matrix: &Csr,
    fixed: &[f32],
    fixed_bias: &[f32],
    mean: f32,
    k: usize,
    lambda: f32,
    biases: bool,
) -> (Vec<f32>, Vec<f32>) {
    let d = k + usize::from(biases);
    let mut out = vec![0.0f32; matrix.rows() * k];
    let mut out_bias = vec![0.0f32; matrix.rows()];
    for u in 0..matrix.rows() {
        let cols = matrix.row_indices(u);
        if cols.is_empty() {
            continue;
        }
        let mut a = vec![0.0f64; d * d];
        let mut b = vec![0.0f64; d];
        for (&i, &r) in cols.iter().zip(matrix.row_values(u)) {
            let mut z: Vec<f64> = fixed[i as usize * k..(i as usize + 1) * k]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let mut t = f64::from(r);
            if biases {
                z.push(1.0);
                t -= f64::from(mean) + f64::from(fixed_bias[i as usize]);
            }
            for r in 0..d {
                for s in 0..d {
                    a[r * d + s] += z[r] * z[s];
                }
                b[r] += t * z[r];
            }
        }
        for j in 0..d {
            a[j * d + j] += f64::from(lambda) * cols.len() as f64;
        }
        if let Some(x) = solve_dense(a, b) {
            for (dst, v) in out[u * k..(u + 1) * k].iter_mut().zip(&x) {
                *dst = *v as f32;
            }
            if biases {
                out_bias[u] = x[k] as f32;
            }
        }
    }
    (out, out_bias)
}
