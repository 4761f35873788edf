//! Fast kernels against their slow references, on small random and checkerboard matrices.

use elastirec_als::data::{Csr, Interactions};
use elastirec_als::implicit::{ImplicitAls, Solver, implicit_loss};
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
    // The reported loss is the objective: recompute it independently at the end.
    let again = implicit_loss(
        &data.by_user,
        &f1.users,
        &f1.items,
        8,
        als.alpha,
        als.regularization,
    );
    assert!((again - r1.loss[5]).abs() < 1e-9 * again.abs().max(1.0));
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
    let fast = top_k_all(&uf, &itf, k, &seen, 10);
    let slow = reference::top_k(&uf, &itf, k, &seen, 10);
    assert_eq!(fast.len(), users);
    for (u, (a, b)) in fast.iter().zip(&slow).enumerate() {
        assert_eq!(a.len(), 10);
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
