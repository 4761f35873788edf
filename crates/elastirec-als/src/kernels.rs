//! Dense vector kernels of the row solvers.
//!
//! Two implementations of the same operations: portable code written so the compiler vectorizes
//! it (eight independent accumulators break the floating-point dependency chain of a plain
//! `sum()`), and, on x86-64 CPUs that have them, AVX2 + FMA intrinsics chosen at run time (the
//! build does not set `target-cpu`). [`RowKernel::detect`] picks one per fit; tests run both
//! against each other and against the dense f64 reference in [`crate::reference`].
//!
//! The hot operation is [`RowKernel::pass`]: one sweep over a row's observed entries that, for
//! each fixed-side factor `y_i`, computes `d_i = y_i·v` and adds a multiple of `y_i` to an
//! accumulator. The conjugate-gradient solver of [`crate::implicit`] does all its per-entry work
//! in such sweeps.

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

/// What [`RowKernel::pass`] adds for each entry, given `c − 1 = scale·w` and `d = y·v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// `(c − (c − 1)·d)·y`: the entry's part of the residual `b − A v`.
    Residual,
    /// `(c − 1)·d·y`: the entry's part of `A v` beyond `YᵀY v`.
    Product,
}

/// The kernels one fit uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKernel {
    /// Plain Rust, any CPU, any number of factors.
    Portable,
    /// AVX2 + FMA for a number of factors that is `8 × chunks` (chunks 1 to 16).
    #[cfg(target_arch = "x86_64")]
    Avx2 { chunks: usize },
}

impl RowKernel {
    /// The fastest kernel this CPU has for `k` factors; `Portable` when `simd` is false.
    pub fn detect(k: usize, simd: bool) -> RowKernel {
        #[cfg(target_arch = "x86_64")]
        {
            if simd
                && k.is_multiple_of(LANES)
                && (1..=16).contains(&(k / LANES))
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return RowKernel::Avx2 { chunks: k / LANES };
            }
        }
        let _ = (k, simd);
        RowKernel::Portable
    }

    /// `out = a · v` for a symmetric row-major `k × k` matrix `a`.
    pub fn symv(self, a: &[f32], v: &[f32], out: &mut [f32]) {
        let k = v.len();
        assert!(
            a.len() == k * k && out.len() == k,
            "symv: shapes do not match"
        );
        match self {
            RowKernel::Portable => symv(a, v, out),
            #[cfg(target_arch = "x86_64")]
            RowKernel::Avx2 { chunks } => {
                assert_eq!(chunks * LANES, k);
                // SAFETY: `detect` chose this kernel only on a CPU with AVX2 and FMA; the
                // shapes were checked above.
                unsafe { avx2::symv(chunks, a, v, out) }
            }
        }
    }

    /// One sweep over a row's entries (`cols`, weights `w`, `c − 1 = scale·w`): adds the
    /// [`PassKind`] term of every entry to `acc` and returns `Σ c_i (y_i·v)`, where `y_i` is
    /// row `cols[i]` of the row-major `fixed` (`v.len()` columns).
    #[allow(clippy::too_many_arguments)]
    pub fn pass(
        self,
        kind: PassKind,
        fixed: &[f32],
        cols: &[u32],
        w: &[f32],
        scale: f32,
        v: &[f32],
        acc: &mut [f32],
    ) -> f32 {
        let fixed_rows = fixed.len() / v.len().max(1);
        assert!(
            cols.iter().all(|&c| (c as usize) < fixed_rows),
            "pass: a column is out of range"
        );
        // SAFETY: every column was just checked.
        unsafe { self.pass_checked_cols(kind, fixed, cols, w, scale, v, acc) }
    }

    /// [`RowKernel::pass`] without the scan of `cols`.
    ///
    /// # Safety
    /// Every `cols[i]` must be below `fixed.len() / v.len()` (a solver that validated its
    /// whole matrix once calls this).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn pass_checked_cols(
        self,
        kind: PassKind,
        fixed: &[f32],
        cols: &[u32],
        w: &[f32],
        scale: f32,
        v: &[f32],
        acc: &mut [f32],
    ) -> f32 {
        let k = v.len();
        assert!(
            cols.len() == w.len() && acc.len() == k,
            "pass: shapes do not match"
        );
        match self {
            RowKernel::Portable => {
                let mut bv = 0.0;
                for (&c, &wi) in cols.iter().zip(w) {
                    let y = &fixed[c as usize * k..(c as usize + 1) * k];
                    let d = dot(y, v);
                    let cm1 = scale * wi;
                    bv += (1.0 + cm1) * d;
                    let g = match kind {
                        PassKind::Residual => 1.0 + cm1 - cm1 * d,
                        PassKind::Product => cm1 * d,
                    };
                    axpy(g, y, acc);
                }
                bv
            }
            #[cfg(target_arch = "x86_64")]
            RowKernel::Avx2 { chunks } => {
                assert_eq!(chunks * LANES, k);
                // SAFETY: AVX2 and FMA are present (see `detect`); every column indexes a full
                // row of `fixed` (checked above) and `v`, `acc` have `k` elements.
                unsafe { avx2::pass(chunks, kind, fixed, cols, w, scale, v, acc) }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 + FMA versions, monomorphized for each number of 8-float chunks so the
    //! accumulators live in registers.

    use std::arch::x86_64::*;

    use super::{LANES, PassKind};

    /// How many entries ahead a sweep prefetches fixed-side rows.
    const PREFETCH: usize = 6;

    macro_rules! dispatch {
        ($chunks:expr, $f:ident, $($arg:expr),*) => {
            match $chunks {
                1 => $f::<1>($($arg),*),
                2 => $f::<2>($($arg),*),
                3 => $f::<3>($($arg),*),
                4 => $f::<4>($($arg),*),
                5 => $f::<5>($($arg),*),
                6 => $f::<6>($($arg),*),
                7 => $f::<7>($($arg),*),
                8 => $f::<8>($($arg),*),
                9 => $f::<9>($($arg),*),
                10 => $f::<10>($($arg),*),
                11 => $f::<11>($($arg),*),
                12 => $f::<12>($($arg),*),
                13 => $f::<13>($($arg),*),
                14 => $f::<14>($($arg),*),
                15 => $f::<15>($($arg),*),
                16 => $f::<16>($($arg),*),
                _ => unreachable!("RowKernel::detect allows 1 to 16 chunks"),
            }
        };
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// AVX2 and FMA must be available; `a` is `k × k`, `v` and `out` have `k = 8·chunks`.
    pub unsafe fn symv(chunks: usize, a: &[f32], v: &[f32], out: &mut [f32]) {
        unsafe { dispatch!(chunks, symv_n, a, v, out) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn symv_n<const C: usize>(a: &[f32], v: &[f32], out: &mut [f32]) {
        let k = C * LANES;
        let mut o = [_mm256_setzero_ps(); C];
        // Symmetric: a·v = Σ_c v[c]·(row c of a), with no horizontal sums.
        for (c, &vc) in v.iter().enumerate().take(k) {
            let b = _mm256_set1_ps(vc);
            let row = a[c * k..(c + 1) * k].as_ptr();
            for (j, oj) in o.iter_mut().enumerate() {
                // SAFETY: the row has k = 8·C floats.
                *oj = _mm256_fmadd_ps(b, unsafe { _mm256_loadu_ps(row.add(j * LANES)) }, *oj);
            }
        }
        for (j, oj) in o.iter().enumerate() {
            // SAFETY: out has k floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(j * LANES), *oj) };
        }
    }

    /// # Safety
    /// AVX2 and FMA must be available; every `cols[i]` indexes a full row of `fixed`; `v`,
    /// `acc` have `k = 8·chunks` floats.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn pass(
        chunks: usize,
        kind: PassKind,
        fixed: &[f32],
        cols: &[u32],
        w: &[f32],
        scale: f32,
        v: &[f32],
        acc: &mut [f32],
    ) -> f32 {
        unsafe { dispatch!(chunks, pass_n, kind, fixed, cols, w, scale, v, acc) }
    }

    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pass_n<const C: usize>(
        kind: PassKind,
        fixed: &[f32],
        cols: &[u32],
        w: &[f32],
        scale: f32,
        v: &[f32],
        acc: &mut [f32],
    ) -> f32 {
        let k = C * LANES;
        let base = fixed.as_ptr();
        let mut vv = [_mm256_setzero_ps(); C];
        let mut a = [_mm256_setzero_ps(); C];
        for j in 0..C {
            // SAFETY: v and acc have k floats.
            unsafe {
                vv[j] = _mm256_loadu_ps(v.as_ptr().add(j * LANES));
                a[j] = _mm256_loadu_ps(acc.as_ptr().add(j * LANES));
            }
        }
        let mut bv = 0.0f32;
        let residual = kind == PassKind::Residual;
        for (i, (&c, &wi)) in cols.iter().zip(w).enumerate() {
            if let Some(&ahead) = cols.get(i + PREFETCH) {
                // SAFETY: prefetching never faults; the address is inside `fixed`.
                unsafe {
                    let p = base.add(ahead as usize * k) as *const i8;
                    let mut off = 0;
                    while off < k * 4 {
                        _mm_prefetch::<_MM_HINT_T0>(p.add(off));
                        off += 64;
                    }
                }
            }
            // SAFETY: the caller guarantees row `c` lies inside `fixed`.
            let y = unsafe { base.add(c as usize * k) };
            let mut d0 = _mm256_setzero_ps();
            let mut d1 = _mm256_setzero_ps();
            let mut j = 0;
            while j + 1 < C {
                unsafe {
                    d0 = _mm256_fmadd_ps(_mm256_loadu_ps(y.add(j * LANES)), vv[j], d0);
                    d1 = _mm256_fmadd_ps(_mm256_loadu_ps(y.add((j + 1) * LANES)), vv[j + 1], d1);
                }
                j += 2;
            }
            if j < C {
                d0 = unsafe { _mm256_fmadd_ps(_mm256_loadu_ps(y.add(j * LANES)), vv[j], d0) };
            }
            let d = hsum(_mm256_add_ps(d0, d1));
            let cm1 = scale * wi;
            bv += (1.0 + cm1) * d;
            let g = if residual {
                1.0 + cm1 - cm1 * d
            } else {
                cm1 * d
            };
            let gv = _mm256_set1_ps(g);
            for (j, aj) in a.iter_mut().enumerate() {
                *aj = _mm256_fmadd_ps(gv, unsafe { _mm256_loadu_ps(y.add(j * LANES)) }, *aj);
            }
        }
        for (j, aj) in a.iter().enumerate() {
            // SAFETY: acc has k floats.
            unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(j * LANES), *aj) };
        }
        bv
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

    #[test]
    fn simd_kernels_match_portable_ones() {
        for k in [8, 24, 64, 128] {
            let fast = RowKernel::detect(k, true);
            let slow = RowKernel::Portable;
            let fixed: Vec<f32> = (0..50 * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
                .collect();
            let mut a = vec![0.0f32; k * k];
            for r in 0..k {
                for c in 0..k {
                    a[r * k + c] = ((r + c) % 5) as f32 - 2.0 + if r == c { 9.0 } else { 0.0 };
                }
            }
            let v: Vec<f32> = (0..k).map(|i| (i as f32 * 0.3).sin()).collect();
            let (mut o1, mut o2) = (vec![0.0; k], vec![0.0; k]);
            fast.symv(&a, &v, &mut o1);
            slow.symv(&a, &v, &mut o2);
            assert!(
                o1.iter().zip(&o2).all(|(x, y)| (x - y).abs() < 1e-3),
                "k={k}"
            );
            let cols = [3u32, 0, 49, 17, 17, 8, 21, 30, 2, 44];
            let w = [1.0f32, 2.0, 0.5, 3.0, 1.0, 4.0, 0.0, 1.5, 2.5, 1.0];
            for kind in [PassKind::Residual, PassKind::Product] {
                let (mut a1, mut a2) = (v.clone(), v.clone());
                let b1 = fast.pass(kind, &fixed, &cols, &w, 0.7, &v, &mut a1);
                let b2 = slow.pass(kind, &fixed, &cols, &w, 0.7, &v, &mut a2);
                let scale = a2.iter().fold(1.0f32, |m, x| m.max(x.abs()));
                assert!(
                    (b1 - b2).abs() <= 1e-4 * b2.abs().max(1.0),
                    "k={k}: {b1} vs {b2}"
                );
                assert!(
                    a1.iter()
                        .zip(&a2)
                        .all(|(x, y)| (x - y).abs() <= 1e-4 * scale),
                    "k={k} {kind:?}"
                );
            }
        }
    }
}
