//! Small dense vector kernels written so the compiler vectorizes them: eight independent
//! accumulators break the floating-point dependency chain of a plain `sum()`.

const LANES: usize = 8;

/// Dot product of two equal-length slices.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (ac, ar) = a.split_at(a.len() - a.len() % LANES);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ar.iter().zip(br) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += alpha * x`.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `out = m · v` for a row-major square matrix `m` of side `v.len()`.
#[inline]
pub fn symv(m: &[f32], v: &[f32], out: &mut [f32]) {
    let k = v.len();
    for (o, row) in out.iter_mut().zip(m.chunks_exact(k)) {
        *o = dot(row, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_plain_loops() {
        for n in [1, 7, 8, 9, 31, 64] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - plain).abs() < 1e-4, "n={n}");
            let mut y = b.clone();
            axpy(2.0, &a, &mut y);
            assert!(
                y.iter()
                    .zip(&a)
                    .zip(&b)
                    .all(|((y, a), b)| (y - (b + 2.0 * a)).abs() < 1e-6)
            );
        }
        let m = [1.0, 2.0, 2.0, 3.0];
        let mut out = [0.0; 2];
        symv(&m, &[1.0, 1.0], &mut out);
        assert_eq!(out, [3.0, 5.0]);
    }
}
