//! `simulate`: a producer whose events come from a planted preference model.
//!
//! Every user `u` and item `j` gets a latent vector of rank 8 drawn from N(0, 1). Item popularity
//! follows Zipf(1.0) over a random order of the items. Each event picks a uniformly random user,
//! then its item with probability 0.7 from softmax(u·v) over all items and 0.3 from popularity;
//! its rating (1–5) is the quintile of u·v among all user–item scores. Each day is generated from
//! its own stream of the seed, so any range of days can be produced independently and the same
//! seed always gives the same files.

use rayon::prelude::*;

use elastirec_core::{Lake, Night, layout};

use crate::movielens::{Movie, Rating, format_events_csv, format_items_csv};
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// Rank of the planted preference vectors.
pub const PLANTED_RANK: usize = 8;
/// Probability that an event's item comes from the user's preferences rather than popularity.
pub const PREFERENCE_SHARE: f64 = 0.7;
/// File name of each simulated day in `raw/events/YYYY/MM/DD/`.
pub const EVENTS_FILE_NAME: &str = "simulated-events.csv";
/// File name of the simulated items in `raw/items/`.
pub const ITEMS_FILE_NAME: &str = "simulated-items.csv";

/// Options of a simulation; see [`SimulateOptions::default`] for the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulateOptions {
    pub start: Night,
    pub days: u32,
    pub users: u32,
    pub items: u32,
    pub events_per_day: u32,
    pub seed: u64,
}

impl Default for SimulateOptions {
    fn default() -> Self {
        SimulateOptions {
            start: Night::from_ymd(2024, 1, 1).unwrap_or(Night::new(chrono::NaiveDate::MIN)),
            days: 30,
            users: 2_000,
            items: 1_000,
            events_per_day: 10_000,
            seed: 42,
        }
    }
}

/// What a simulation wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulateReport {
    pub days: u32,
    pub events: u64,
    pub first_day: Night,
    pub last_day: Night,
}

/// The planted truth: latent vectors, popularity and rating thresholds.
#[derive(Debug, Clone)]
pub struct PlantedModel {
    users: usize,
    items: usize,
    user_vectors: Vec<f32>,
    item_vectors: Vec<f32>,
    /// Cumulative popularity distribution over items.
    popularity_cdf: Vec<f64>,
    /// Scores separating ratings 1|2, 2|3, 3|4, 4|5.
    rating_cuts: [f32; 4],
}

impl PlantedModel {
    /// Draws the planted model of a seed.
    pub fn new(users: usize, items: usize, seed: u64) -> Self {
        let mut g = SplitMix64::stream(seed, u64::MAX);
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| g.normal() as f32).collect() };
        let user_vectors = draw(users * PLANTED_RANK);
        let item_vectors = draw(items * PLANTED_RANK);
        // Zipf(1.0) over a random order of the items.
        let mut order: Vec<usize> = (0..items).collect();
        let mut g = SplitMix64::stream(seed, u64::MAX - 1);
        for i in (1..items).rev() {
            order.swap(i, g.below(i as u64 + 1) as usize);
        }
        let mut weight = vec![0.0f64; items];
        for (rank, &item) in order.iter().enumerate() {
            weight[item] = 1.0 / (rank as f64 + 1.0);
        }
        let popularity_cdf = cumulative(&weight);
        let mut model = PlantedModel {
            users,
            items,
            user_vectors,
            item_vectors,
            popularity_cdf,
            rating_cuts: [0.0; 4],
        };
        // Quintiles of u·v over a large sample of user–item pairs.
        let samples = 200_000.min(users * items).max(1);
        let mut scores: Vec<f32> = (0..samples)
            .map(|_| {
                let u = g.below(users as u64) as usize;
                let j = g.below(items as u64) as usize;
                model.score(u, j)
            })
            .collect();
        scores.sort_by(f32::total_cmp);
        for (q, cut) in model.rating_cuts.iter_mut().enumerate() {
            *cut = scores[(samples * (q + 1) / 5).min(samples - 1)];
        }
        model
    }

    /// The planted affinity u·v.
    pub fn score(&self, user: usize, item: usize) -> f32 {
        let u = &self.user_vectors[user * PLANTED_RANK..(user + 1) * PLANTED_RANK];
        let v = &self.item_vectors[item * PLANTED_RANK..(item + 1) * PLANTED_RANK];
        u.iter().zip(v).map(|(a, b)| a * b).sum()
    }

    /// The rating (1–5) the planted model gives a pair.
    pub fn rating(&self, user: usize, item: usize) -> f32 {
        let s = self.score(user, item);
        1.0 + self.rating_cuts.iter().filter(|&&c| s > c).count() as f32
    }

    /// softmax(u·v) over all items, as a cumulative distribution.
    fn preference_cdf(&self, user: usize) -> Vec<f64> {
        let scores: Vec<f64> = (0..self.items)
            .map(|j| f64::from(self.score(user, j)))
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        cumulative(&weights)
    }

    /// Events of one day, sorted by time. Ids are 1-based, like MovieLens.
    pub fn day_events(&self, day: Night, events: u32, seed: u64) -> Vec<Rating> {
        let mut g = SplitMix64::stream(seed, day.days_since_epoch() as u64);
        let day_start = day.start_unix_seconds();
        // Draw every event's random numbers in order first: the result does not depend on how
        // the per-user work below is scheduled.
        struct Draw {
            user: usize,
            from_preference: bool,
            pick: f64,
            second: i64,
        }
        let draws: Vec<Draw> = (0..events)
            .map(|_| Draw {
                user: g.below(self.users as u64) as usize,
                from_preference: g.next_f64() < PREFERENCE_SHARE,
                pick: g.next_f64(),
                second: g.below(86_400) as i64,
            })
            .collect();
        let mut by_user: Vec<Vec<usize>> = vec![Vec::new(); self.users];
        for (i, d) in draws.iter().enumerate() {
            by_user[d.user].push(i);
        }
        let mut items = vec![0usize; draws.len()];
        let picked: Vec<(usize, usize)> = by_user
            .par_iter()
            .enumerate()
            .filter(|(_, idx)| !idx.is_empty())
            .flat_map_iter(|(user, idx)| {
                let needs_pref = idx.iter().any(|&i| draws[i].from_preference);
                let pref = needs_pref.then(|| self.preference_cdf(user));
                idx.iter()
                    .map(|&i| {
                        let d = &draws[i];
                        let cdf = match &pref {
                            Some(p) if d.from_preference => p,
                            _ => &self.popularity_cdf,
                        };
                        (i, sample(cdf, d.pick))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for (i, item) in picked {
            items[i] = item;
        }
        let mut out: Vec<Rating> = draws
            .iter()
            .zip(&items)
            .map(|(d, &item)| Rating {
                user_id: d.user as i64 + 1,
                item_id: item as i64 + 1,
                rating: self.rating(d.user, item),
                timestamp: day_start + d.second,
            })
            .collect();
        out.sort_by_key(|r| (r.timestamp, r.user_id, r.item_id));
        out
    }
}

fn cumulative(weights: &[f64]) -> Vec<f64> {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

fn sample(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}

/// Writes `opts.days` days of events (and the item list) into the lake's raw area.
pub async fn simulate(lake: &Lake, opts: &SimulateOptions) -> Result<SimulateReport> {
    if opts.days == 0 || opts.users == 0 || opts.items == 0 {
        return Err(Error::Options(
            "simulate needs at least 1 day, 1 user and 1 item (--days, --users, --items)".into(),
        ));
    }
    let model = PlantedModel::new(opts.users as usize, opts.items as usize, opts.seed);
    let movies: Vec<Movie> = (1..=i64::from(opts.items))
        .map(|id| Movie {
            item_id: id,
            title: format!("Item {id}"),
            genres: format!("Genre {}", id % 12),
        })
        .collect();
    lake.put(
        &layout::raw_items_root().join(ITEMS_FILE_NAME),
        format_items_csv(&movies)?,
    )
    .await?;
    let mut events = 0u64;
    let last_day = opts.start.plus_days(u64::from(opts.days) - 1);
    for day in opts.start.through(last_day) {
        let rows = model.day_events(day, opts.events_per_day, opts.seed);
        events += rows.len() as u64;
        let path = layout::raw_events_day(day).join(EVENTS_FILE_NAME);
        lake.put(&path, format_events_csv(rows.iter()).into_bytes())
            .await?;
    }
    Ok(SimulateReport {
        days: opts.days,
        events,
        first_day: opts.start,
        last_day,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_reproducible_and_inside_the_day() {
        let model = PlantedModel::new(50, 40, 7);
        let day: Night = "2024-01-05".parse().unwrap();
        let a = model.day_events(day, 500, 7);
        let b = PlantedModel::new(50, 40, 7).day_events(day, 500, 7);
        assert_eq!(a, b);
        assert_eq!(a.len(), 500);
        assert!(
            a.iter()
                .all(|r| Night::of_unix_seconds(r.timestamp) == Some(day))
        );
        assert!(
            a.iter()
                .all(|r| (1..=50).contains(&r.user_id) && (1..=40).contains(&r.item_id))
        );
        assert!(a.iter().all(|r| (1.0..=5.0).contains(&r.rating)));
        assert_ne!(a, model.day_events(day.next(), 500, 7));
    }

    #[test]
    fn preferences_are_planted() {
        // Items a user picks should score higher under the planted model than random items.
        let model = PlantedModel::new(200, 300, 3);
        let day: Night = "2024-01-01".parse().unwrap();
        let rows = model.day_events(day, 20_000, 3);
        let picked: f64 = rows
            .iter()
            .map(|r| f64::from(model.score(r.user_id as usize - 1, r.item_id as usize - 1)))
            .sum::<f64>()
            / rows.len() as f64;
        assert!(picked > 1.0, "mean planted score of picked items {picked}");
        let ratings: std::collections::BTreeSet<i64> =
            rows.iter().map(|r| r.rating as i64).collect();
        assert_eq!(ratings.len(), 5);
    }
}
