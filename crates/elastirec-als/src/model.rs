//! A trained model read back from `models/YYYY/MM/DD/` (written by [`crate::stage::train_night`]):
//! scores and recommends without retraining.
//!
//! The factor files carry the id maps (row `r` of `user_factors.parquet` is the user whose id is
//! in row `r`), `model.json` the parameters and training metrics. Users or items the model does
//! not know get the popularity fallback, flagged with source `popular`; everything the factors
//! score has source `als`.

use std::collections::HashSet;

use elastirec_core::manifest::{ModelInfo, columns, sources};
use elastirec_core::{Lake, Night, layout};

use crate::data::{Csr, IdMap};
use crate::popularity::Popularity;
use crate::topk::{select_top, top_k_all};
use crate::{Error, Result};
use elastirec_lake::{io, read_model_info};

/// One scored item.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub item_id: i64,
    pub score: f32,
    /// `als` when the factors scored it, `popular` for the popularity fallback.
    pub source: &'static str,
}

/// A model loaded from the lake.
#[derive(Debug, Clone)]
pub struct Model {
    pub info: ModelInfo,
    pub users: IdMap,
    pub items: IdMap,
    /// Columns per factor row.
    pub factors: usize,
    /// Row-major, one row per user index of `users`.
    pub user_factors: Vec<f32>,
    /// Row-major, one row per item index of `items`.
    pub item_factors: Vec<f32>,
}

impl Model {
    /// Reads night `night`'s model: `model.json` and both factor files.
    pub async fn load(lake: &Lake, night: Night) -> Result<Model> {
        let info = read_model_info(lake, night).await?;
        let (user_ids, user_factors, ku) = io::read_factors(
            lake,
            &io::model_factor_file(&info, "user_factors"),
            columns::USER_ID,
        )
        .await?;
        let (item_ids, item_factors, ki) = io::read_factors(
            lake,
            &io::model_factor_file(&info, "item_factors"),
            columns::ITEM_ID,
        )
        .await?;
        let dir = layout::model_dir(night).to_string();
        if !user_ids.is_empty() && !item_ids.is_empty() && ku != ki {
            return Err(Error::BadInput {
                path: dir,
                reason: format!("user factors have {ku} columns, item factors {ki}"),
            });
        }
        let factors = if user_ids.is_empty() { ki } else { ku };
        let users = IdMap::from_vec(user_ids.clone());
        let items = IdMap::from_vec(item_ids.clone());
        // The files are written in sorted id order; anything else means the rows and the maps
        // would disagree.
        if users.ids() != user_ids.as_slice() || items.ids() != item_ids.as_slice() {
            return Err(Error::BadInput {
                path: dir,
                reason: "factor rows are not in sorted, distinct id order: retrain the night"
                    .into(),
            });
        }
        Ok(Model {
            info,
            users,
            items,
            factors,
            user_factors,
            item_factors,
        })
    }

    fn user_row(&self, u: u32) -> &[f32] {
        let k = self.factors;
        &self.user_factors[u as usize * k..(u as usize + 1) * k]
    }

    fn item_row(&self, i: u32) -> &[f32] {
        let k = self.factors;
        &self.item_factors[i as usize * k..(i as usize + 1) * k]
    }

    /// The model's score of one (user, item) pair, or `None` when either is unknown to it.
    pub fn score(&self, user_id: i64, item_id: i64) -> Option<f32> {
        let u = self.users.index(user_id)?;
        let i = self.items.index(item_id)?;
        Some(crate::kernels::dot(self.user_row(u), self.item_row(i)))
    }

    /// Scores given items for a user: the factors where the model knows both, else the item's
    /// popularity (its training-window user count, 0 if never seen) flagged `popular`.
    pub fn score_items(
        &self,
        user_id: i64,
        item_ids: &[i64],
        popularity: &Popularity,
    ) -> Vec<Scored> {
        item_ids
            .iter()
            .map(|&item_id| match self.score(user_id, item_id) {
                Some(score) => Scored {
                    item_id,
                    score,
                    source: sources::ALS,
                },
                None => Scored {
                    item_id,
                    score: popularity.count(item_id) as f32,
                    source: sources::POPULAR,
                },
            })
            .collect()
    }

    /// The best `n` items for a user that are not in `seen`: from the factors when the model
    /// knows the user, else the most popular unseen items, flagged `popular`.
    pub fn recommend(
        &self,
        user_id: i64,
        n: usize,
        seen: &HashSet<i64>,
        popularity: &Popularity,
    ) -> Vec<Scored> {
        let Some(u) = self.users.index(user_id) else {
            return popular(n, seen, popularity);
        };
        let x = self.user_row(u);
        let scores: Vec<f32> = (0..self.items.len() as u32)
            .map(|i| crate::kernels::dot(x, self.item_row(i)))
            .collect();
        let mut exclude: Vec<u32> = seen.iter().filter_map(|&i| self.items.index(i)).collect();
        exclude.sort_unstable();
        select_top(&scores, &exclude, n)
            .into_iter()
            .map(|(i, score)| Scored {
                item_id: self.items.id(i),
                score,
                source: sources::ALS,
            })
            .collect()
    }

    /// The model's items without `blocked` (items no list may hold: excluded, unavailable), in
    /// the model's order, for [`Model::recommend_all_over`].
    pub fn items_without(&self, blocked: &HashSet<i64>) -> ItemSubset {
        let k = self.factors;
        let mut ids = Vec::with_capacity(self.items.len());
        let mut factors = Vec::with_capacity(self.item_factors.len());
        for (i, &id) in self.items.ids().iter().enumerate() {
            if !blocked.contains(&id) {
                ids.push(id);
                factors.extend_from_slice(&self.item_factors[i * k..(i + 1) * k]);
            }
        }
        ItemSubset {
            index: IdMap::from_vec(ids),
            factors,
        }
    }

    /// [`Model::recommend_all`] over `items` only: their indices are `items.index`'s, and so
    /// are `seen`'s.
    pub fn recommend_all_over(
        &self,
        items: &ItemSubset,
        seen: &Csr,
        n: usize,
    ) -> Vec<Vec<(u32, f32)>> {
        if self.factors == 0 {
            return vec![Vec::new(); self.users.len()];
        }
        top_k_all(&self.user_factors, &items.factors, self.factors, seen, n)
    }

    /// Top-`n` lists for every user the model knows (blocked GEMM, see [`top_k_all`]); `seen`
    /// has one row per user index of the model, with item indices of the model.
    pub fn recommend_all(&self, seen: &Csr, n: usize) -> Vec<Vec<(u32, f32)>> {
        if self.factors == 0 {
            return vec![Vec::new(); self.users.len()];
        }
        top_k_all(
            &self.user_factors,
            &self.item_factors,
            self.factors,
            seen,
            n,
        )
    }
}

/// Some of a model's items, with their factors in the same order (see
/// [`Model::items_without`]).
#[derive(Debug, Clone)]
pub struct ItemSubset {
    pub index: IdMap,
    factors: Vec<f32>,
}

/// The popularity fallback: the `n` most popular items not in `seen`, flagged `popular`.
pub fn popular<S: std::hash::BuildHasher>(
    n: usize,
    seen: &HashSet<i64, S>,
    popularity: &Popularity,
) -> Vec<Scored> {
    popularity
        .top(n, |i| seen.contains(&i))
        .into_iter()
        .map(|(item_id, count)| Scored {
            item_id,
            score: count as f32,
            source: sources::POPULAR,
        })
        .collect()
}
