//! Fast kernels against their slow references, on small random and checkerboard matrices.

use elastirec_als::data::{Csr, Interactions};
use elastirec_als::implicit::{Confidence, ImplicitAls, Solver, implicit_loss};
use elastirec_als::reference;
use elastirec_als::topk::top_k_all;

/// A tiny deterministic generator for test data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_interactions(users: u64, items: u64, nnz: usize, seed: u64) -> Interactions {
    let mut g = Lcg(seed);
    let mut u = Vec::new();
    let mut i = Vec::new();
    let mut v = Vec::new();
    for _ in 0..nnz {
        u.push(g.below(users) as i64 * 3 + 100); // sparse, unsorted external ids
        i.push(g.below(items) as i64 * 7 + 5);
        v.push(1.0 + g.below(5) as f32);
    }
    Interactions::from_columns(&u, &i, &v)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn cholesky_half_step_matches_dense_reference() {
    for (seed, k) in [(1, 4), (2, 8), (3, 16)] {
        let data = random_interactions(40, 30, 300, seed);
        let als = ImplicitAls::default()
            .with_factors(k)
            .with_alpha(2.0)
            .with_regularization(0.1);
        let items = als.initial_factors(data.items.len(), 9);
        // Scale up so the systems are far from trivial.
        let items: Vec<f32> = items.iter().map(|x| x * 50.0).collect();
        let mut fast = vec![0.0f32; data.users.len() * k];
        als.solve_rows(&data.by_user, &items, &mut fast).unwrap();
        let slow = reference::implicit_half_step(
            &data.by_user,
            &items,
            data.items.len(),
            k,
            als.alpha,
            als.regularization,
        );
        let scale = slow.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.01, "reference factors are all ~0: {scale}");
        let diff = max_abs_diff(&fast, &slow);
        assert!(
            diff <= 1e-3 * scale.max(1.0),
            "k={k}: max diff {diff}, scale {scale}"
        );
    }
}

#[test]
fn conjugate_gradient_converges_to_the_exact_solve() {
    for (seed, k) in [(5, 4), (6, 16)] {
        let data = random_interactions(40, 30, 300, seed);
        let base = ImplicitAls::default()
            .with_factors(k)
            .with_alpha(2.0)
            .with_regularization(0.1);
        let items: Vec<f32> = base
            .initial_factors(data.items.len(), 9)
            .iter()
            .map(|x| x * 50.0)
            .collect();
        let mut exact = vec![0.0f32; data.users.len() * k];
        base.solve_rows(&data.by_user, &items, &mut exact).unwrap();
        // From a cold start, 3k steps of CG reach the exact solution (k steps in exact arithmetic).
        let cg = base
            .clone()
            .with_solver(Solver::ConjugateGradient { steps: 3 * k });
        let mut approx = vec![0.0f32; data.users.len() * k];
        cg.solve_rows(&data.by_user, &items, &mut approx).unwrap();
        let scale = exact.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let diff = max_abs_diff(&exact, &approx);
        assert!(
            diff <= 1e-3 * scale.max(1.0),
            "k={k}: max diff {diff}, scale {scale}"
        );
        // Warm-started from the answer, CG stays there.
        let mut warm = exact.clone();
        base.clone()
            .with_solver(Solver::ConjugateGradient { steps: 3 })
            .solve_rows(&data.by_user, &items, &mut warm)
            .unwrap();
        assert!(max_abs_diff(&exact, &warm) <= 1e-3 * scale.max(1.0));
    }
}

#[test]
fn fit_is_finite_deterministic_and_loss_decreases() {
    for solver in [Solver::Cholesky, Solver::ConjugateGradient { steps: 3 }] {
        fit_checks(solver);
    }
}

fn fit_checks(solver: Solver) {
    let data = random_interactions(60, 50, 600, 4);
    let als = ImplicitAls::default()
        .with_factors(8)
        .with_iterations(6)
        .with_solver(solver);
    let (f1, r1) = als.fit(&data, |_, _| {}).unwrap();
    let (f2, _) = als.fit(&data, |_, _| {}).unwrap();
    assert!(f1.all_finite());
    assert_eq!(f1, f2, "same seed and threads must give the same factors");
    assert_eq!(r1.loss.len(), 6);
    for w in r1.loss.windows(2) {
        assert!(
            w[1] <= w[0] * (1.0 + 1e-5),
            "{solver:?}: loss went up: {:?}",
            r1.loss
        );
    }
    assert!(r1.loss[5] < r1.loss[0], "{solver:?}: {:?}", r1.loss);
    // The reported loss (derived from the solver's own sweeps) is the objective: recompute it
    // independently, cell by cell, at the end.
    let again = implicit_loss(
        &data.by_user,
        &f1.users,
        &f1.items,
        8,
        als.alpha,
        als.regularization,
    );
    assert!(
        (again - r1.loss[5]).abs() < 1e-4 * again.abs().max(1e-6),
        "{solver:?}: reported {} recomputed {again}",
        r1.loss[5]
    );
}

#[test]
fn simd_and_portable_fits_agree() {
    let data = random_interactions(80, 70, 1500, 21);
    for k in [8, 16, 64] {
        let als = ImplicitAls::default()
            .with_factors(k)
            .with_iterations(4)
            .with_solver(Solver::ConjugateGradient { steps: 3 });
        // One half-step from the same start: the kernels agree to rounding.
        let items: Vec<f32> = als
            .initial_factors(data.items.len(), 9)
            .iter()
            .map(|x| x * 50.0)
            .collect();
        let start = als.initial_factors(data.users.len(), 2);
        let (mut fast, mut slow) = (start.clone(), start);
        als.solve_rows(&data.by_user, &items, &mut fast).unwrap();
        als.clone()
            .with_simd(false)
            .solve_rows(&data.by_user, &items, &mut slow)
            .unwrap();
        let scale = slow.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.01, "k={k}");
        let diff = max_abs_diff(&fast, &slow);
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "k={k}: {diff} at scale {scale}"
        );
        // Whole fits reach the same loss (rounding differences grow over iterations).
        let (f, rf) = als.fit(&data, |_, _| {}).unwrap();
        let (_, rs) = als.clone().with_simd(false).fit(&data, |_, _| {}).unwrap();
        assert!(f.all_finite());
        let (a, b) = (rf.loss[3], rs.loss[3]);
        assert!((a - b).abs() <= 1e-3 * b.abs(), "k={k}: {a} vs {b}");
    }
}

#[test]
fn log_confidence_matches_the_reference_on_transformed_values() {
    let data = random_interactions(40, 30, 300, 8);
    let k = 8;
    let als = ImplicitAls::default()
        .with_factors(k)
        .with_alpha(2.0)
        .with_regularization(0.1)
        .with_confidence(Confidence::Log { epsilon: 0.5 });
    let items: Vec<f32> = als
        .initial_factors(data.items.len(), 9)
        .iter()
        .map(|x| x * 50.0)
        .collect();
    let mut fast = vec![0.0f32; data.users.len() * k];
    als.solve_rows(&data.by_user, &items, &mut fast).unwrap();
    // c = 1 + alpha·ln(1 + r/ε): the reference with values ln(1 + r/ε) is the same system.
    let mut logged = data.by_user.clone();
    logged.values = logged.values.iter().map(|r| (1.0 + r / 0.5).ln()).collect();
    let slow = reference::implicit_half_step(&logged, &items, data.items.len(), k, 2.0, 0.1);
    let scale = slow.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(max_abs_diff(&fast, &slow) <= 1e-3 * scale.max(1.0));
    // And it is a different model from the linear one.
    let mut linear = vec![0.0f32; data.users.len() * k];
    als.clone()
        .with_confidence(Confidence::Linear)
        .solve_rows(&data.by_user, &items, &mut linear)
        .unwrap();
    assert!(max_abs_diff(&fast, &linear) > 1e-2 * scale);
    assert!(
        ImplicitAls::default()
            .with_confidence(Confidence::Log { epsilon: 0.0 })
            .fit(&data, |_, _| {})
            .is_err()
    );
}

#[test]
fn early_stop_ends_when_the_loss_flattens() {
    let data = random_interactions(60, 50, 600, 4);
    let als = ImplicitAls::default()
        .with_factors(8)
        .with_iterations(200)
        .with_solver(Solver::ConjugateGradient { steps: 3 });
    let (_, full) = als.fit(&data, |_, _| {}).unwrap();
    assert_eq!(full.loss.len(), 200);
    let (_, early) = als.with_tolerance(1e-3).fit(&data, |_, _| {}).unwrap();
    let n = early.loss.len();
    assert!((2..200).contains(&n), "stopped after {n}");
    let last = early.loss[n - 1];
    let prev = early.loss[n - 2];
    assert!(prev - last <= 1e-3 * prev, "{prev} -> {last}");
    assert!(
        early.loss[..n - 1]
            .windows(2)
            .all(|w| w[0] - w[1] > 1e-3 * w[0])
    );
}

#[test]
fn fit_does_not_depend_on_the_order_of_input_rows() {
    let mut g = Lcg(77);
    let n = 2000;
    let (mut u, mut i, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        u.push(g.below(90) as i64 * 11);
        i.push(g.below(60) as i64 + 1000);
        v.push(1.0 + g.below(4) as f32);
    }
    let a = Interactions::from_columns(&u, &i, &v);
    // Reverse and interleave the rows.
    let order: Vec<usize> = (0..n).rev().step_by(2).chain((0..n).step_by(2)).collect();
    let pick = |c: &Vec<i64>| order.iter().map(|&r| c[r]).collect::<Vec<_>>();
    let vv: Vec<f32> = order.iter().map(|&r| v[r]).collect();
    let b = Interactions::from_columns(&pick(&u), &pick(&i), &vv);
    let als = ImplicitAls::default()
        .with_factors(16)
        .with_iterations(3)
        .with_solver(Solver::ConjugateGradient { steps: 3 });
    let (fa, _) = als.fit(&a, |_, _| {}).unwrap();
    let (fb, _) = als.fit(&b, |_, _| {}).unwrap();
    assert_eq!(fa, fb);
}

#[test]
fn csr_from_columns_keeps_the_largest_duplicate_and_transposes() {
    let data = Interactions::from_columns(
        &[5, 5, 9, 5, 1_000_000_000_000],
        &[2, 2, 2, 7, 7],
        &[1.0, 3.0, 2.0, 4.0, 5.0],
    );
    assert_eq!(data.nnz(), 4);
    assert_eq!(data.by_user.row_values(0), &[3.0, 4.0]);
    assert_eq!(data.users.index(1_000_000_000_000), Some(2));
    assert_eq!(data.users.index(6), None);
    assert_eq!(data.by_item, data.by_user.transpose(data.items.len()));
    assert_eq!(data.by_item.row_indices(1), &[0, 2]);
}

#[test]
fn checkerboard_recommends_the_users_own_block() {
    // Users 0..20 like items 0..10 and users 20..40 like items 10..20, each missing a few.
    let mut u = Vec::new();
    let mut i = Vec::new();
    for user in 0..40i64 {
        let block = if user < 20 { 0 } else { 10 };
        for item in block..block + 10 {
            if (user + item) % 5 != 0 {
                u.push(user);
                i.push(item);
            }
        }
    }
    let v = vec![1.0f32; u.len()];
    let data = Interactions::from_columns(&u, &i, &v);
    let (f, _) = ImplicitAls::default()
        .with_factors(4)
        .with_iterations(10)
        .with_regularization(0.01)
        .fit(&data, |_, _| {})
        .unwrap();
    let lists = top_k_all(&f.users, &f.items, 4, &data.by_user, 2);
    for (user, list) in lists.iter().enumerate() {
        let block = if user < 20 { 0..10 } else { 10..20 };
        assert_eq!(list.len(), 2);
        for &(item, _) in list {
            let id = data.items.id(item);
            assert!(
                block.contains(&id),
                "user {user} got item {id} from the other block"
            );
            assert!(
                !data.by_user.contains(user, item),
                "user {user} got a seen item"
            );
        }
    }
}

#[test]
fn blocked_top_k_matches_sorting_reference() {
    let mut g = Lcg(11);
    let k = 6;
    let (users, items) = (37usize, 2_100usize);
    let mut rnd = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| g.below(2000) as f32 / 1000.0 - 1.0)
            .collect()
    };
    let uf = rnd(users * k);
    let itf = rnd(items * k);
    let mut triples = Vec::new();
    for u in 0..users as u32 {
        for j in 0..40u32 {
            triples.push((u, (u * 53 + j * 17) % items as u32, 1.0));
        }
    }
    let seen = Csr::from_triples(users, &triples);
    // From one item (the pool is cut back at every second entry) to lists deeper than a tile.
    for n in [1, 10, 57, 300, 2_100] {
        check_top_k(&uf, &itf, k, &seen, n);
    }
}

fn check_top_k(uf: &[f32], itf: &[f32], k: usize, seen: &Csr, n: usize) {
    let users = uf.len() / k;
    let items = itf.len() / k;
    let fast = top_k_all(uf, itf, k, seen, n);
    let slow = reference::top_k(uf, itf, k, seen, n);
    assert_eq!(fast.len(), users);
    for (u, (a, b)) in fast.iter().zip(&slow).enumerate() {
        assert_eq!(a.len(), n.min(items - seen.row_indices(u).len()), "n = {n}");
        assert_eq!(a.len(), b.len(), "n = {n}");
        for (r, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x.1 - y.1).abs() < 1e-4,
                "user {u} rank {r}: {x:?} vs {y:?}"
            );
            // Items agree unless two scores are within rounding of each other.
            if x.0 != y.0 {
                assert!(
                    (x.1 - y.1).abs() < 1e-4,
                    "user {u} rank {r}: {x:?} vs {y:?}"
                );
            }
            assert!(!seen.contains(u, x.0));
        }
    }
}

#[test]
fn dense_solver_solves() {
    let a = vec![4.0, 1.0, 2.0, 1.0, 3.0, 0.0, 2.0, 0.0, 5.0];
    let x = reference::solve_dense(a.clone(), vec![1.0, 2.0, 3.0]).unwrap();
    for r in 0..3 {
        let s: f64 = (0..3).map(|c| a[r * 3 + c] * x[c]).sum();
        assert!((s - [1.0, 2.0, 3.0][r]).abs() < 1e-12);
    }
    assert!(reference::solve_dense(vec![0.0; 4], vec![1.0, 1.0]).is_none());
}

#[test]
fn because_you_liked_contributions_sum_to_the_exact_score() {
    let data = random_interactions(30, 25, 250, 13);
    let k = 6;
    let als = ImplicitAls::default()
        .with_factors(k)
        .with_alpha(3.0)
        .with_regularization(0.1);
    let items: Vec<f32> = als
        .initial_factors(data.items.len(), 9)
        .iter()
        .map(|x| x * 50.0)
        .collect();
    let mut users = vec![0.0f32; data.users.len() * k];
    als.solve_rows(&data.by_user, &items, &mut users).unwrap();
    let u = 4;
    let cols = data.by_user.row_indices(u);
    let values = data.by_user.row_values(u);
    let target = (0..data.items.len() as u32)
        .find(|i| !cols.contains(i))
        .unwrap();
    let all = als
        .explain(&items, cols, values, target, cols.len())
        .unwrap();
    assert_eq!(all.len(), cols.len());
    assert!(all.windows(2).all(|w| w[0].1 >= w[1].1));
    let sum: f32 = all.iter().map(|c| c.1).sum();
    let t = target as usize;
    let score: f32 = users[u * k..(u + 1) * k]
        .iter()
        .zip(&items[t * k..(t + 1) * k])
        .map(|(a, b)| a * b)
        .sum();
    assert!(
        (sum - score).abs() < 1e-3 * score.abs().max(1.0),
        "{sum} vs {score}"
    );
    assert_eq!(
        als.explain(&items, cols, values, target, 2).unwrap(),
        all[..2]
    );
    assert!(als.explain(&items, cols, values, 10_000, 2).is_err());
}

#[test]
fn similar_items_are_the_cosine_nearest_and_exclude_the_item() {
    let k = 3;
    // Items 0 and 2 point the same way (different lengths); 1 is orthogonal; 3 is opposite.
    let items = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 5.0, 0.1, 0.0, -1.0, 0.0, 0.0];
    let sim = elastirec_als::implicit::similar_items(&items, k, 2);
    assert_eq!(sim.len(), 4);
    assert_eq!(sim[0][0].0, 2);
    assert!((sim[0][0].1 - 0.9998).abs() < 1e-3);
    assert_eq!(sim[2][0].0, 0);
    assert!(
        sim.iter()
            .enumerate()
            .all(|(i, l)| l.iter().all(|(j, _)| *j as usize != i))
    );
    assert!(sim[3].iter().all(|(_, s)| *s <= 1e-6));
}
