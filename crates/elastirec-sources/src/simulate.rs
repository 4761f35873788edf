//! `simulate`: a producer whose events come from a planted preference model.
//!
//! Every user `u` and item `j` gets a latent vector of rank 8 drawn from N(0, 1). Item popularity
//! follows Zipf(1.0) over a random order of the items. Each event picks a uniformly random user,
//! then its item with probability 0.7 from softmax(u·v) over all items and 0.3 from popularity;
//! its rating (1–5) is the quintile of u·v among all user–item scores. Each day is generated from
//! its own stream of the seed, so any range of days can be produced independently and the same
//! seed always gives the same files.
//!
//! [`simulate_scaled`] (`simulate --scale S`) uses the same planted vectors and popularity at
//! MovieLens 20M's shape: 138,493·S users, 27,278·S items and 20,000,263·S events from
//! 1995-01-09 to 2015-03-31, each user with at least 20 events and a power-law number more, on
//! distinct items, rated in half stars from 0.5 to 5. It is generated user by user (each user
//! from its own stream of the seed, in parallel), sorted by time and written as one CSV per day
//! that has events.

use futures::StreamExt;
use rayon::prelude::*;

use elastirec_core::{Lake, Night, layout};

use crate::movielens::{Movie, Rating, format_events_csv, format_items_csv};
use crate::{Error, Result};
use elastirec_core::rng::SplitMix64;

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
    /// How the events are written.
    pub format: SimulateFormat,
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
            format: SimulateFormat::Movielens,
        }
    }
}

/// What a simulation wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulateReport {
    pub days: u32,
    pub events: u64,
    /// Event files written (one per day, or one per arrival hour with `--format segment`).
    pub files: u64,
    /// Lines delivered a second time (`--format segment`).
    pub redelivered: u64,
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

/// MovieLens 20M's users, the `--scale 1` shape.
pub const ML20M_USERS: u32 = 138_493;
/// MovieLens 20M's items.
pub const ML20M_ITEMS: u32 = 27_278;
/// MovieLens 20M's ratings.
pub const ML20M_EVENTS: u64 = 20_000_263;
/// Every simulated user has at least this many events (as in MovieLens).
pub const MIN_USER_EVENTS: u32 = 20;
/// Smallest scale: below it the catalogue gets too small for every user's distinct items.
pub const MIN_SCALE: f64 = 0.02;
/// Shape of the Lomax (Pareto II) law of a user's events beyond the first 20; 1.85 gives
/// MovieLens 20M's mean (144) to median (68) ratio.
const ACTIVITY_SHAPE: f64 = 1.85;
/// Days written per batch of formatted files (bounds the memory of the CSV text).
const DAYS_PER_BATCH: usize = 64;

/// Options of a MovieLens-20M-shaped simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleOptions {
    /// 1 gives MovieLens 20M's counts; smaller scales shrink users, items and events alike.
    pub scale: f64,
    pub seed: u64,
    /// How the events are written.
    pub format: SimulateFormat,
}

/// The files a scaled simulation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimulateFormat {
    /// MovieLens 20M's CSV, one file per day folder, integer ids, ratings.
    #[default]
    Movielens,
    /// Segment track calls (UUID users, SKU items, view/cart/purchase) in gzip JSON lines, one
    /// file per arrival-hour folder, ~1% delivered twice: see [`crate::segment`].
    Segment,
    /// The Segment files with integer user and item ids (1-based, as the MovieLens format).
    SegmentIntegerIds,
}

impl SimulateFormat {
    /// Whether the events are written as Segment track calls.
    fn is_segment(self) -> bool {
        matches!(
            self,
            SimulateFormat::Segment | SimulateFormat::SegmentIntegerIds
        )
    }
}

/// Counts and days of a scaled simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaledShape {
    pub users: u32,
    pub items: u32,
    pub events: u64,
    pub first_day: Night,
    pub last_day: Night,
}

impl ScaleOptions {
    /// The shape of the data set this scale describes, or why the scale is out of range.
    pub fn shape(&self) -> Result<ScaledShape> {
        if !(self.scale.is_finite() && (MIN_SCALE..=1.0).contains(&self.scale)) {
            return Err(Error::Options(format!(
                "--scale {} is out of range: use {MIN_SCALE} to 1 (1 is MovieLens 20M's size)",
                self.scale
            )));
        }
        let day =
            |y, m, d| Night::from_ymd(y, m, d).ok_or_else(|| Error::Options("bad day".into()));
        Ok(ScaledShape {
            users: (f64::from(ML20M_USERS) * self.scale).round() as u32,
            items: (f64::from(ML20M_ITEMS) * self.scale).round() as u32,
            events: (ML20M_EVENTS as f64 * self.scale).round() as u64,
            first_day: day(1995, 1, 9)?,
            last_day: day(2015, 3, 31)?,
        })
    }
}

/// One generated event, compact: seconds since the first day's midnight, indices, half stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Event {
    pub(crate) second: u32,
    pub(crate) user: u32,
    pub(crate) item: u32,
    pub(crate) half_stars: u8,
}

/// Each user's number of events: 20 plus a Lomax-distributed share of the rest, capped at half
/// the catalogue, summing to exactly `shape.events`.
fn user_event_counts(shape: &ScaledShape, seed: u64) -> Result<Vec<u32>> {
    let users = shape.users as usize;
    let cap = (shape.items / 2).max(MIN_USER_EVENTS);
    let floor = u64::from(MIN_USER_EVENTS) * users as u64;
    if shape.events < floor || shape.events > u64::from(cap) * users as u64 {
        return Err(Error::Options(format!(
            "{} events cannot give {} users between {MIN_USER_EVENTS} and {cap} events each: \
             use a larger --scale",
            shape.events, shape.users
        )));
    }
    let mut g = SplitMix64::stream(seed, u64::MAX - 2);
    let weights: Vec<f64> = (0..users)
        .map(|_| (1.0 - g.next_f64()).powf(-1.0 / ACTIVITY_SHAPE) - 1.0)
        .collect();
    let total: f64 = weights.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let extra = (shape.events - floor) as f64;
    let mut counts: Vec<u32> = weights
        .iter()
        .map(|w| {
            (f64::from(MIN_USER_EVENTS) + (extra * w / total).floor()).min(f64::from(cap)) as u32
        })
        .collect();
    // Hand out what flooring and the cap left over, one event at a time, round robin.
    let mut missing = shape.events - counts.iter().map(|&c| u64::from(c)).sum::<u64>();
    while missing > 0 {
        for c in counts.iter_mut() {
            if missing == 0 {
                break;
            }
            if *c < cap {
                *c += 1;
                missing -= 1;
            }
        }
    }
    Ok(counts)
}

/// Per-thread scratch of [`PlantedModel::user_events`].
struct UserScratch {
    picked: Vec<bool>,
    candidates: Vec<u32>,
    keys: Vec<(f32, u32)>,
}

impl PlantedModel {
    /// Fills `out` with one user's events: distinct items, 70% of them the best of a
    /// popularity-drawn candidate set under Gumbel-perturbed planted scores (a draw without
    /// replacement from the softmax), the rest the other candidates in popularity order; days
    /// within the user's active span, ratings from the planted score plus noise.
    fn user_events(
        &self,
        user: usize,
        seed: u64,
        days: u32,
        s: &mut UserScratch,
        out: &mut [Event],
    ) {
        let n = out.len();
        let mut g = SplitMix64::stream(seed, (1u64 << 40) + user as u64);
        // Candidates: distinct items drawn by popularity, topped up uniformly if the head of the
        // popularity law keeps repeating itself.
        let want = (2 * n + 32).min(self.items);
        s.candidates.clear();
        let mut tries = 0;
        while s.candidates.len() < want {
            let item = if tries < 8 * want {
                sample(&self.popularity_cdf, g.next_f64())
            } else {
                g.below(self.items as u64) as usize
            };
            tries += 1;
            if !s.picked[item] {
                s.picked[item] = true;
                s.candidates.push(item as u32);
            }
        }
        for &c in &s.candidates {
            s.picked[c as usize] = false;
        }
        // Gumbel-top-n over planted scores: the best `n_pref` keys are a softmax draw without
        // replacement.
        let n_pref = ((n as f64) * PREFERENCE_SHARE).round() as usize;
        s.keys.clear();
        s.keys.extend(s.candidates.iter().map(|&c| {
            let gumbel = -(-(1.0 - g.next_f64()).ln()).ln();
            (self.score(user, c as usize) + gumbel as f32, c)
        }));
        if n_pref > 0 && n_pref < s.keys.len() {
            s.keys
                .select_nth_unstable_by(n_pref - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        }
        let preferred = s.keys[..n_pref.min(s.keys.len())].iter().map(|k| k.1);
        for &(_, c) in &s.keys[..n_pref.min(s.keys.len())] {
            s.picked[c as usize] = true;
        }
        let rest = s
            .candidates
            .iter()
            .copied()
            .filter(|&c| !s.picked[c as usize]);
        let items: Vec<u32> = preferred.chain(rest).take(n).collect();
        for &(_, c) in &s.keys[..n_pref.min(s.keys.len())] {
            s.picked[c as usize] = false;
        }
        // Active span: 60% of users rate everything on one day, the rest over an exponential
        // number of days (mean one year) from a uniform first day.
        let first = g.below(u64::from(days)) as u32;
        let span = if g.next_f64() < 0.6 {
            0
        } else {
            ((-(1.0 - g.next_f64()).ln() * 365.0) as u32).min(days - 1 - first)
        };
        let scale = (PLANTED_RANK as f32).sqrt();
        for (e, item) in out.iter_mut().zip(items) {
            let day = first + g.below(u64::from(span) + 1) as u32;
            let second = day * 86_400 + g.below(86_400) as u32;
            let z = self.score(user, item as usize) / scale;
            let stars = 2.9 + 0.7 * z + 0.6 * g.normal() as f32;
            let half_stars = (stars * 2.0).round().clamp(1.0, 10.0) as u8;
            *e = Event {
                second,
                user: user as u32,
                item,
                half_stars,
            };
        }
    }
}

/// Writes the simulated catalogue (`Item N`, `Genre N % 12` for ids 1..=items) as the raw
/// items file.
async fn write_items(lake: &Lake, items: u32) -> Result<()> {
    let movies: Vec<Movie> = (1..=i64::from(items))
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
    Ok(())
}

/// Writes a MovieLens-20M-shaped simulation (see [`ScaleOptions`]) into the lake's raw area.
pub async fn simulate_scaled(lake: &Lake, opts: &ScaleOptions) -> Result<SimulateReport> {
    let shape = opts.shape()?;
    let counts = user_event_counts(&shape, opts.seed)?;
    let model = PlantedModel::new(shape.users as usize, shape.items as usize, opts.seed);
    let days = (shape.last_day.days_since_epoch() - shape.first_day.days_since_epoch() + 1) as u32;
    if opts.format == SimulateFormat::Movielens {
        write_items(lake, shape.items).await?;
    }

    let mut events = vec![
        Event {
            second: 0,
            user: 0,
            item: 0,
            half_stars: 0
        };
        shape.events as usize
    ];
    {
        let mut slices: Vec<(usize, &mut [Event])> = Vec::with_capacity(counts.len());
        let mut rest: &mut [Event] = &mut events;
        for (user, &c) in counts.iter().enumerate() {
            let (head, tail) = rest.split_at_mut(c as usize);
            slices.push((user, head));
            rest = tail;
        }
        slices.into_par_iter().for_each_init(
            || UserScratch {
                picked: vec![false; model.items],
                candidates: Vec::new(),
                keys: Vec::new(),
            },
            |scratch, (user, out)| model.user_events(user, opts.seed, days, scratch, out),
        );
    }
    // The range's first and last days always have an event: the first user's first event moves
    // to the first day, the last user's to the last day (same second of the day).
    if let Some(e) = events.first_mut() {
        e.second %= 86_400;
    }
    if let Some(e) = events.last_mut() {
        e.second = (days - 1) * 86_400 + e.second % 86_400;
    }
    events.par_sort_unstable();
    if opts.format.is_segment() {
        let event_days = events
            .windows(2)
            .filter(|w| w[0].second / 86_400 != w[1].second / 86_400)
            .count() as u32
            + u32::from(!events.is_empty());
        return crate::segment::write_segment(
            lake,
            &events,
            (shape.first_day, shape.last_day, event_days),
            (shape.users, shape.items),
            opts.seed,
            opts.format == SimulateFormat::SegmentIntegerIds,
        )
        .await;
    }

    let base = shape.first_day.start_unix_seconds();
    // Day boundaries of the sorted events.
    let mut day_ranges: Vec<(u32, std::ops::Range<usize>)> = Vec::new();
    let mut start = 0;
    while start < events.len() {
        let day = events[start].second / 86_400;
        let end = start + events[start..].partition_point(|e| e.second / 86_400 == day);
        day_ranges.push((day, start..end));
        start = end;
    }
    for batch in day_ranges.chunks(DAYS_PER_BATCH) {
        let files: Vec<(object_store::path::Path, String)> = batch
            .par_iter()
            .map(|(day, range)| {
                let night = shape.first_day.plus_days(u64::from(*day));
                let rows: Vec<Rating> = events[range.clone()]
                    .iter()
                    .map(|e| Rating {
                        user_id: i64::from(e.user) + 1,
                        item_id: i64::from(e.item) + 1,
                        rating: f32::from(e.half_stars) / 2.0,
                        timestamp: base + i64::from(e.second),
                    })
                    .collect();
                (
                    layout::raw_events_day(night).join(EVENTS_FILE_NAME),
                    format_events_csv(rows.iter()),
                )
            })
            .collect();
        let mut puts = futures::stream::iter(
            files
                .into_iter()
                .map(|(path, body)| async move { lake.put(&path, body.into_bytes()).await }),
        )
        .buffer_unordered(16);
        while let Some(r) = puts.next().await {
            r?;
        }
    }
    Ok(SimulateReport {
        days: day_ranges.len() as u32,
        events: events.len() as u64,
        files: day_ranges.len() as u64,
        redelivered: 0,
        first_day: shape.first_day,
        last_day: shape.last_day,
    })
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
    let last_day = opts.start.plus_days(u64::from(opts.days) - 1);
    if opts.format.is_segment() {
        let base = opts.start.start_unix_seconds();
        let mut events = Vec::new();
        for day in opts.start.through(last_day) {
            let rows = model.day_events(day, opts.events_per_day, opts.seed);
            events.extend(rows.iter().map(|r| Event {
                second: (r.timestamp - base) as u32,
                user: (r.user_id - 1) as u32,
                item: (r.item_id - 1) as u32,
                half_stars: (r.rating * 2.0).round() as u8,
            }));
        }
        return crate::segment::write_segment(
            lake,
            &events,
            (opts.start, last_day, opts.days),
            (opts.users, opts.items),
            opts.seed,
            opts.format == SimulateFormat::SegmentIntegerIds,
        )
        .await;
    }
    write_items(lake, opts.items).await?;
    let mut events = 0u64;
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
        files: u64::from(opts.days),
        redelivered: 0,
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
