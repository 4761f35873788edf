//! Criterion benchmarks of the ALS kernels (not tests; CI does not run them):
//!
//! ```text
//! cargo bench --profile dev --bench kernels
//! ```
//!
//! (`--profile dev` reuses the development build, whose `elastirec-als`, `faer` and `pulp` are
//! compiled at opt-level 3; the release profile would rebuild the whole workspace.)
//!
//! - `half_step/cg3` and `half_step/cholesky`: one half-step of implicit ALS, 64 factors, over
//!   2,000 rows of 200 entries each against 5,000 fixed rows, with each solver;
//! - `half_step/cg3_portable`: the same without the SIMD kernels;
//! - `top_k/block`: top-10 of 1,024 users over 20,000 items (64 factors), seen items excluded.

use criterion::{Criterion, criterion_group, criterion_main};

use elastirec_als::data::Csr;
use elastirec_als::implicit::{ImplicitAls, Solver};
use elastirec_als::topk::top_k_all;

const K: usize = 64;

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

fn matrix(rows: usize, cols: usize, per_row: usize) -> Csr {
    let mut triples = Vec::with_capacity(rows * per_row);
    for r in 0..rows {
        for j in 0..per_row {
            let c = (r * 7919 + j * 104_729) % cols;
            triples.push((r as u32, c as u32, 1.0 + (j % 5) as f32));
        }
    }
    Csr::from_triples(rows, &triples)
}

fn half_step(c: &mut Criterion) {
    let m = matrix(2_000, 5_000, 200);
    let fixed = random(5_000 * K, 1);
    let mut g = c.benchmark_group("half_step");
    g.sample_size(10);
    for (name, solver, simd) in [
        ("cg3", Solver::ConjugateGradient { steps: 3 }, true),
        (
            "cg3_portable",
            Solver::ConjugateGradient { steps: 3 },
            false,
        ),
        ("cholesky", Solver::Cholesky, true),
    ] {
        let als = ImplicitAls::default()
            .with_factors(K)
            .with_solver(solver)
            .with_simd(simd);
        let mut out = random(2_000 * K, 2);
        g.bench_function(name, |b| {
            b.iter(|| als.solve_rows(&m, &fixed, &mut out).expect("solves"))
        });
    }
    g.finish();
}

fn top_k(c: &mut Criterion) {
    let users = random(1_024 * K, 3);
    let items = random(20_000 * K, 4);
    let seen = matrix(1_024, 20_000, 100);
    let mut g = c.benchmark_group("top_k");
    g.sample_size(10);
    g.bench_function("block", |b| {
        b.iter(|| top_k_all(&users, &items, K, &seen, 10))
    });
    g.finish();
}

criterion_group!(benches, half_step, top_k);
criterion_main!(benches);
