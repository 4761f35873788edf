//! Grid search for `elastirec tune`: fits one model per grid point on one night's training
//! export, in memory, and scores its top-K lists against the events of the following days with
//! the backtest's ground truth ([`crate::evaluate::GroundTruth`]).
//!
//! ```text
//!  exports/training/D−H/ ──▶ TuneData (interactions, seen pairs, popularity)
//!  events of D−H+1..D ─────▶ GroundTruth
//!           for each (factors, regularization, alpha): ImplicitAls::fit ──▶ top_k_all ──▶ scores
//! ```
//!
//! Nothing is written here; the caller keeps the grid and the choice in the run record.
//! The lists are made as the nightly `recommend` step makes them: seen items excluded, the
//! popularity fallback for users the model does not cover, so the scores are comparable with
//! the nightly evaluation's.

use std::collections::{HashMap, HashSet};

use elastirec_core::config::{ModelConfig, SolverKind};
use elastirec_core::manifest::{RankingScores, TuningPoint};
use elastirec_core::{Lake, Night};

use crate::data::{Csr, Interactions};
use crate::evaluate::{GroundTruth, Holdout, popularity_lists};
use crate::implicit::{ImplicitAls, Solver};
use crate::metrics::catalog_coverage;
use crate::popularity::Popularity;
use crate::topk::top_k_all;
use crate::{Error, Result};
use elastirec_lake::{SeenByUser, SeenPairs, read_export_manifest};

/// The values tried for each parameter; the grid is their product.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub factors: Vec<usize>,
    pub regularization: Vec<f32>,
    pub alpha: Vec<f32>,
}

impl Default for Grid {
    /// 3 × 3 × 3 = 27 points around the `[model]` defaults.
    fn default() -> Self {
        Grid {
            factors: vec![16, 32, 64],
            regularization: vec![0.01, 0.05, 0.5],
            alpha: vec![1.0, 5.0, 20.0],
        }
    }
}

impl Grid {
    /// Every (factors, regularization, alpha), factors varying slowest.
    pub fn points(&self) -> Vec<(usize, f32, f32)> {
        let mut out = Vec::new();
        for &f in &self.factors {
            for &r in &self.regularization {
                for &a in &self.alpha {
                    out.push((f, r, a));
                }
            }
        }
        out
    }

    /// Checks every value, naming the flag to fix.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Error::BadInput {
            path: "tune grid".into(),
            reason,
        };
        if self.points().is_empty() {
            return Err(bad(
                "the grid is empty: give at least one value to --factors, --regularization and \
                 --alpha"
                    .into(),
            ));
        }
        if let Some(f) = self.factors.iter().find(|&&f| f == 0) {
            return Err(bad(format!("--factors {f}: factors must be at least 1")));
        }
        for (name, values) in [
            ("--regularization", &self.regularization),
            ("--alpha", &self.alpha),
        ] {
            if let Some(v) = values.iter().find(|v| !v.is_finite() || **v < 0.0) {
                return Err(bad(format!("{name} {v}: must be a finite number ≥ 0")));
            }
        }
        Ok(())
    }
}

/// One night's training data and the later days' ground truth, loaded once for every point.
pub struct TuneData {
    interactions: Interactions,
    /// Seen items of each model user, by model indices (rows follow `interactions.users`).
    seen_csr: Csr,
    seen: SeenByUser,
    popularity: Popularity,
    catalog: HashSet<i64>,
    pub truth: GroundTruth,
}

impl TuneData {
    /// Reads the training export of `train_night` and builds the ground truth of `holdout`.
    pub async fn load(lake: &Lake, train_night: Night, holdout: &Holdout) -> Result<TuneData> {
        let export = read_export_manifest(lake, train_night).await?;
        let pairs = SeenPairs {
            training: elastirec_lake::io::read_pairs(lake, &export.files, true).await?,
            older: elastirec_lake::io::read_pairs(lake, &export.seen_files, false).await?,
            again: elastirec_lake::read_again(lake, &export).await?,
        };
        let t = &pairs.training;
        let interactions = Interactions::from_columns(&t.user_ids, &t.item_ids, &t.values);
        let seen = pairs.by_user();
        let triples: Vec<(u32, u32, f32)> = pairs
            .iter()
            .filter_map(|(u, i)| {
                Some((
                    interactions.users.index(u)?,
                    interactions.items.index(i)?,
                    1.0,
                ))
            })
            .collect();
        let seen_csr = Csr::from_triples(interactions.users.len(), &triples);
        let catalog: HashSet<i64> = interactions.items.ids().iter().copied().collect();
        let truth = GroundTruth::new(holdout, &seen, &catalog);
        Ok(TuneData {
            popularity: Popularity::from_pairs(pairs.training_items()),
            interactions,
            seen_csr,
            seen,
            catalog,
            truth,
        })
    }

    /// Items known at the training night.
    pub fn catalog_items(&self) -> usize {
        self.catalog.len()
    }

    /// The popularity baseline's scores at `k` (each user's most popular unseen items).
    pub fn popularity_scores(&self, k: usize) -> RankingScores {
        let lists = popularity_lists(&self.popularity, &self.seen, k);
        let mut s = self.truth.score(k, |u| lists.get(&u).cloned());
        s.catalog_coverage = catalog_coverage(lists.values().map(Vec::as_slice), &self.catalog, k);
        s
    }

    /// Fits `als` and scores its top-`k` lists (the popularity fallback for users the model
    /// does not cover).
    pub fn fit_and_score(&self, als: &ImplicitAls, k: usize) -> Result<RankingScores> {
        let (factors, _) = als.fit(&self.interactions, |_, _| {})?;
        if !factors.all_finite() {
            return Err(Error::Internal(format!(
                "factors are not finite with factors {}, regularization {}, alpha {}",
                als.factors, als.regularization, als.alpha
            )));
        }
        let top = top_k_all(
            &factors.users,
            &factors.items,
            factors.factors,
            &self.seen_csr,
            k,
        );
        let mut lists: HashMap<i64, Vec<i64>> = top
            .into_iter()
            .enumerate()
            .map(|(u, list)| {
                let items = list
                    .into_iter()
                    .map(|(i, _)| self.interactions.items.id(i))
                    .collect();
                (self.interactions.users.id(u as u32), items)
            })
            .collect();
        for (u, s) in &self.seen {
            lists.entry(*u).or_insert_with(|| {
                self.popularity
                    .top(k, |i| s.contains(&i))
                    .into_iter()
                    .map(|(i, _)| i)
                    .collect()
            });
        }
        let mut s = self.truth.score(k, |u| lists.get(&u).cloned());
        s.catalog_coverage = catalog_coverage(lists.values().map(Vec::as_slice), &self.catalog, k);
        Ok(s)
    }

    /// Fits and scores every point of `grid` in grid order; `on_point` sees each one as it
    /// finishes.
    pub fn run_grid(
        &self,
        base: &ModelConfig,
        grid: &Grid,
        k: usize,
        mut on_point: impl FnMut(&TuningPoint),
    ) -> Result<Vec<TuningPoint>> {
        grid.validate()?;
        let mut out = Vec::new();
        for (factors, regularization, alpha) in grid.points() {
            let start = std::time::Instant::now();
            let als = ImplicitAls::default()
                .with_factors(factors)
                .with_iterations(base.iterations)
                .with_regularization(regularization)
                .with_alpha(alpha)
                .with_seed(base.seed)
                .with_solver(match base.solver {
                    SolverKind::Cg => Solver::ConjugateGradient {
                        steps: base.cg_steps,
                    },
                    SolverKind::Cholesky => Solver::Cholesky,
                });
            let scores = self.fit_and_score(&als, k)?;
            let point = TuningPoint {
                factors,
                regularization,
                alpha,
                scores,
                seconds: start.elapsed().as_secs_f64(),
            };
            on_point(&point);
            out.push(point);
        }
        Ok(out)
    }
}

/// Index of the point with the highest NDCG; the first such point on ties (the grid lists
/// smaller models first). `None` for an empty grid.
pub fn best_point(points: &[TuningPoint]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, p) in points.iter().enumerate() {
        if best.is_none_or(|b| p.scores.ndcg > points[b].scores.ndcg) {
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ndcg: f64) -> TuningPoint {
        TuningPoint {
            factors: 1,
            regularization: 0.0,
            alpha: 0.0,
            scores: RankingScores {
                ndcg,
                ..RankingScores::default()
            },
            seconds: 0.0,
        }
    }

    #[test]
    fn the_best_point_is_the_first_maximum() {
        let points = [point(0.1), point(0.3), point(0.2), point(0.3)];
        assert_eq!(best_point(&points), Some(1));
        assert_eq!(best_point(&[]), None);
    }

    #[test]
    fn the_grid_is_the_product_and_rejects_bad_values() {
        let g = Grid {
            factors: vec![8, 16],
            regularization: vec![0.1],
            alpha: vec![1.0, 2.0],
        };
        assert_eq!(
            g.points(),
            vec![(8, 0.1, 1.0), (8, 0.1, 2.0), (16, 0.1, 1.0), (16, 0.1, 2.0)]
        );
        assert!(g.validate().is_ok());
        assert_eq!(Grid::default().points().len(), 27);
        for bad in [
            Grid {
                factors: vec![0],
                ..g.clone()
            },
            Grid {
                alpha: vec![-1.0],
                ..g.clone()
            },
            Grid {
                regularization: vec![],
                ..g.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
