//! Explicit feedback (ALS-WR): the fast half-step against the dense reference, and RMSE on
//! MovieLens 100K.

use std::path::{Path, PathBuf};

use elastirec_als::data::Interactions;
use elastirec_als::explicit::ExplicitAls;
use elastirec_als::reference;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn small_ratings(seed: u64) -> Interactions {
    let mut s = seed;
    let mut next = |n: u64| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % n
    };
    let (mut u, mut i, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..400 {
        u.push(next(40) as i64);
        i.push(next(30) as i64);
        v.push(1.0 + next(5) as f32);
    }
    Interactions::from_columns(&u, &i, &v)
}

#[test]
fn explicit_half_step_matches_dense_reference() {
    let data = small_ratings(3);
    for biases in [true, false] {
        let k = 6;
        let als = ExplicitAls {
            factors: k,
            biases,
            regularization: 0.05,
            ..ExplicitAls::default()
        };
        let fixed: Vec<f32> = (0..data.items.len() * k)
            .map(|j| ((j * 37 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let fixed_bias: Vec<f32> = (0..data.items.len())
            .map(|j| (j % 3) as f32 * 0.2)
            .collect();
        let mut out = vec![0.0f32; data.users.len() * k];
        let mut out_bias = vec![0.0f32; data.users.len()];
        als.half_step(
            &data.by_user,
            &fixed,
            &fixed_bias,
            3.1,
            &mut out,
            &mut out_bias,
        )
        .unwrap();
        let (slow, slow_bias) =
            reference::explicit_half_step(&data.by_user, &fixed, &fixed_bias, 3.1, k, 0.05, biases);
        let scale = slow.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.01, "reference rows are all ~0");
        assert!(
            max_abs_diff(&out, &slow) <= 1e-3 * scale.max(1.0),
            "biases={biases}"
        );
        assert!(
            max_abs_diff(&out_bias, &slow_bias) <= 1e-3,
            "biases={biases}"
        );
        if !biases {
            assert!(out_bias.iter().all(|&b| b == 0.0));
        }
    }
}

#[test]
fn explicit_fit_is_finite_deterministic_and_rmse_decreases() {
    let data = small_ratings(9);
    let als = ExplicitAls {
        factors: 4,
        iterations: 8,
        ..ExplicitAls::default()
    };
    let (m1, r1) = als.fit(&data, |_, _| {}).unwrap();
    let (m2, _) = als.fit(&data, |_, _| {}).unwrap();
    assert_eq!(m1, m2);
    assert!(m1.users.iter().chain(&m1.items).all(|x| x.is_finite()));
    assert!(r1.loss.last().unwrap() < &r1.loss[0], "{:?}", r1.loss);
    // Folded factors predict the same ratings (before clamping).
    let (uf, itf, k2) = m1.serving_factors();
    assert_eq!(k2, 6);
    let dot: f32 = uf[..k2].iter().zip(&itf[..k2]).map(|(a, b)| a * b).sum();
    let direct = m1.mean
        + m1.user_bias[0]
        + m1.item_bias[0]
        + m1.users[..4]
            .iter()
            .zip(&m1.items[..4])
            .map(|(a, b)| a * b)
            .sum::<f32>();
    assert!((dot - direct).abs() < 1e-4);
}

fn movielens_100k() -> Option<PathBuf> {
    let dir = std::env::var("MOVIELENS_100K")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/movielens-100k")
        });
    dir.join("ratings.csv").exists().then_some(dir)
}

#[test]
fn explicit_rmse_on_movielens_100k_random_split() {
    let Some(dir) = movielens_100k() else {
        eprintln!(
            "SKIPPED: MovieLens 100K not found (../shared/data/movielens-100k/ratings.csv): set \
             MOVIELENS_100K to the folder holding ratings.csv"
        );
        return;
    };
    let text = std::fs::read_to_string(dir.join("ratings.csv")).unwrap();
    let mut rows: Vec<(i64, i64, f32)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 100_000);
    // A seeded Fisher–Yates shuffle, then 80% to train.
    let mut s = 2024u64;
    for i in (1..rows.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rows.swap(i, ((s >> 33) % (i as u64 + 1)) as usize);
    }
    let (train, test) = rows.split_at(80_000);
    let data = Interactions::from_columns(
        &train.iter().map(|r| r.0).collect::<Vec<_>>(),
        &train.iter().map(|r| r.1).collect::<Vec<_>>(),
        &train.iter().map(|r| r.2).collect::<Vec<_>>(),
    );
    let als = ExplicitAls {
        factors: 10,
        iterations: 15,
        regularization: 0.1,
        ..ExplicitAls::default()
    };
    let (model, report) = als.fit(&data, |_, _| {}).unwrap();
    // Test pairs whose user and item the model knows (nearly all of a random split).
    let known: Vec<(usize, usize, f32)> = test
        .iter()
        .filter_map(|&(u, i, r)| {
            Some((
                data.users.index(u)? as usize,
                data.items.index(i)? as usize,
                r,
            ))
        })
        .collect();
    assert!(known.len() > 19_000);
    let rmse = model.rmse(known.iter().copied());
    let mean_only = (known
        .iter()
        .map(|&(_, _, r)| f64::from(r - model.mean).powi(2))
        .sum::<f64>()
        / known.len() as f64)
        .sqrt();
    println!(
        "ML-100K random 80/20: test RMSE {rmse:.4} (global mean alone {mean_only:.4}), train \
         RMSE {:?}",
        report.loss
    );
    assert!(rmse <= 0.93, "test RMSE {rmse:.4} > 0.93");
    assert!(rmse < mean_only - 0.1);
}
