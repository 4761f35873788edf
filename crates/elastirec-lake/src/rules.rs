//! Offer rules: what the business can offer, applied to every list at recommend time.
//!
//! The model is unchanged; rules only choose among its candidates and the popularity ranking:
//!
//! ```text
//!  [rules] (config) ───────────────────────────┐
//!  exports/training/D/items-*.parquet (genres) ─┼─▶ OfferRules ──┐
//!  exports/training/D/availability-*.parquet ───┘                │
//!                                                                ▼
//!  model top-N candidates (N > K) ──▶ pin/boost promoted ──▶ drop excluded, unavailable, seen,
//!        over the genre cap ──▶ K items; fewer left: fill from popularity under the same rules
//! ```
//!
//! Each kept item says why it is there in `source`: `als` (the model ranked it), `promoted` (a
//! promotion rule placed or boosted it) or `popular` (the fill). An item is *available* on the
//! day the lists go live (the day after night D) unless it has availability rows that apply
//! (rows without region/segment, or with the configured `[rules] region`/`segment`) and none of
//! them covers that day. A list can only end shorter than K when the rules leave fewer than K
//! items in the whole catalogue.

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use object_store::path::Path;

use elastirec_core::config::{PromoteMode, RulesConfig};
use elastirec_core::ids::{IdDictionary, IdNames};
use elastirec_core::manifest::{ExportManifest, columns, sources};
use elastirec_core::{Lake, Night};

use crate::io::read_parquet;
use crate::popularity::Popularity;
use crate::read_export_ids;
use crate::{Error, Result};

/// One row of `availability-*.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct AvailabilityWindow {
    pub item_id: i64,
    pub from: Option<Night>,
    pub to: Option<Night>,
    pub region: Option<String>,
    pub segment: Option<String>,
}

/// The rules of one night, ready to apply.
#[derive(Debug, Clone)]
pub struct OfferRules {
    config: RulesConfig,
    excluded: HashSet<i64>,
    /// `promoted_items` the night knows, as internal ids, in order.
    promoted: Vec<i64>,
    unavailable: HashSet<i64>,
    genres: FastMap<i64, Vec<String>>,
    /// At most this many items of one genre (`max_per_genre`, or `max_per.genres`); 0: none.
    genre_cap: usize,
    /// The other diversity caps (`max_per`), by catalog column.
    caps: Vec<(String, usize)>,
    /// Each item's value of each capped column, as (index into `caps`, value).
    groups: FastMap<i64, Vec<(usize, String)>>,
}

/// The maps every offer of every list looks into: a fast hash (ids and short values are not
/// attacker-chosen here), as SipHash was a third of a night's rules work.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What the export says of one item under the `[rules]` predicates (`item-rules-*.parquet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemFlags {
    pub item_id: i64,
    pub excluded: bool,
    pub promoted: bool,
}

/// One item of a list after the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub item_id: i64,
    pub score: f32,
    pub source: &'static str,
}

impl OfferRules {
    /// Rules from their parts: the config, the availability windows and item genres
    /// (`|`-separated, as in `warehouse/items`), for lists that go live on `day`.
    pub fn new(
        config: &RulesConfig,
        day: Night,
        windows: &[AvailabilityWindow],
        genres: &HashMap<i64, String>,
    ) -> OfferRules {
        OfferRules::with_names(config, day, windows, genres, &IdNames::default())
    }

    /// [`OfferRules::new`] for a night whose string item ids `items` names: the configured
    /// (external) item ids become internal ids; ids the night does not know are left out (no
    /// list can hold them).
    pub fn with_names(
        config: &RulesConfig,
        day: Night,
        windows: &[AvailabilityWindow],
        genres: &HashMap<i64, String>,
        items: &IdNames,
    ) -> OfferRules {
        let applies = |w: &AvailabilityWindow| {
            let matches = |row: &Option<String>, wanted: &Option<String>| {
                row.is_none() || row.as_deref() == wanted.as_deref()
            };
            matches(&w.region, &config.region) && matches(&w.segment, &config.segment)
        };
        let mut covered: HashMap<i64, bool> = HashMap::new();
        if config.exclude_unavailable {
            for w in windows.iter().filter(|w| applies(w)) {
                let open = w.from.is_none_or(|f| f <= day) && w.to.is_none_or(|t| day <= t);
                *covered.entry(w.item_id).or_default() |= open;
            }
        }
        let caps: Vec<(String, usize)> = config
            .caps()
            .into_iter()
            .filter(|(c, _)| c != "genres")
            .collect();
        OfferRules {
            config: config.clone(),
            genre_cap: config.caps().get("genres").copied().unwrap_or(0),
            caps,
            groups: FastMap::default(),
            excluded: config
                .exclude_items
                .iter()
                .filter_map(|i| items.internal(i))
                .collect(),
            promoted: config
                .promoted_items
                .iter()
                .filter_map(|i| items.internal(i))
                .collect(),
            unavailable: covered
                .into_iter()
                .filter(|(_, open)| !open)
                .map(|(i, _)| i)
                .collect(),
            genres: genres
                .iter()
                .map(|(&i, g)| {
                    let list = g
                        .split('|')
                        .map(str::trim)
                        .filter(|g| !g.is_empty() && *g != "(no genres listed)")
                        .map(str::to_string)
                        .collect();
                    (i, list)
                })
                .collect(),
        }
    }

    /// Rules that change nothing: the model's candidates in order, filled from popularity,
    /// seen items left out.
    pub fn inactive() -> OfferRules {
        OfferRules {
            config: RulesConfig {
                exclude_unavailable: false,
                ..RulesConfig::default()
            },
            excluded: HashSet::new(),
            promoted: Vec::new(),
            unavailable: HashSet::new(),
            genres: FastMap::default(),
            genre_cap: 0,
            caps: Vec::new(),
            groups: FastMap::default(),
        }
    }

    /// Adds what the export's `[rules]` predicates and `max_per` columns say: flagged items are
    /// excluded or promoted (after `promoted_items`, in item id order), and each item's value
    /// of each capped column counts against its cap. Values of columns without a cap are
    /// ignored.
    pub fn with_item_rules(
        mut self,
        flags: &[ItemFlags],
        groups: &[(i64, String, String)],
    ) -> Self {
        self.excluded
            .extend(flags.iter().filter(|f| f.excluded).map(|f| f.item_id));
        let mut promoted: Vec<i64> = flags
            .iter()
            .filter(|f| f.promoted && !f.excluded)
            .map(|f| f.item_id)
            .collect();
        promoted.sort_unstable();
        for item in promoted {
            if !self.promoted.contains(&item) {
                self.promoted.push(item);
            }
        }
        for (item, attribute, value) in groups {
            if let Some(cap) = self.caps.iter().position(|(c, _)| c == attribute) {
                self.groups
                    .entry(*item)
                    .or_default()
                    .push((cap, value.clone()));
            }
        }
        self
    }

    /// The rules for night `night`'s lists: `[rules]` with the export's availability windows
    /// and item genres; `None` when no rule would change a list.
    pub async fn load(
        lake: &Lake,
        export: &ExportManifest,
        night: Night,
        config: &RulesConfig,
    ) -> Result<Option<OfferRules>> {
        let windows = if config.exclude_unavailable {
            read_windows(lake, export).await?
        } else {
            Vec::new()
        };
        let genres = if config.caps().contains_key("genres") {
            read_genres(lake, export).await?
        } else {
            HashMap::new()
        };
        let names = if config.exclude_items.is_empty() && config.promoted_items.is_empty() {
            IdDictionary::default()
        } else {
            read_export_ids(lake, export).await?
        };
        let (flags, groups) = read_item_rules(lake, export).await?;
        let rules = OfferRules::with_names(config, night.next(), &windows, &genres, &names.items)
            .with_item_rules(&flags, &groups);
        Ok(rules.is_active().then_some(rules))
    }

    /// Whether any rule can change a list.
    pub fn is_active(&self) -> bool {
        !self.excluded.is_empty()
            || !self.unavailable.is_empty()
            || self.genre_cap > 0
            || !self.caps.is_empty()
            || !self.promoted.is_empty()
    }

    /// The settings, for the recommendations manifest.
    pub fn config(&self) -> &RulesConfig {
        &self.config
    }

    /// Items unavailable on the lists' day.
    pub fn unavailable(&self) -> &HashSet<i64> {
        &self.unavailable
    }

    /// Model candidates to score per user so that K usually remain after the rules.
    pub fn candidates(&self, k: usize) -> usize {
        let cap = if self.genre_cap > 0 || !self.caps.is_empty() {
            4 * k
        } else {
            0
        };
        // Pinned promotions take at most `max_promoted` places, which their own candidates then
        // leave free; boosted ones are taken out of the candidates and put back with their
        // boost, so each may cost a place.
        let promoted = match self.config.promote {
            PromoteMode::Pin => self.config.max_promoted.min(k).min(self.promoted.len()),
            PromoteMode::Boost => self.promoted.len(),
        };
        k + self.excluded.len() + self.unavailable.len() + cap + promoted
    }

    /// Items no list may hold (excluded, unavailable): the recommend step scores without them.
    pub fn blocked(&self) -> HashSet<i64> {
        self.excluded.union(&self.unavailable).copied().collect()
    }

    /// [`OfferRules::candidates`] when the blocked items are not scored at all.
    pub fn candidates_among_allowed(&self, k: usize) -> usize {
        self.candidates(k) - self.excluded.len() - self.unavailable.len()
    }

    /// Whether an item may be offered at all (not excluded, available).
    pub fn allowed(&self, item: i64) -> bool {
        !self.excluded.contains(&item) && !self.unavailable.contains(&item)
    }

    /// One user's list of (up to) `k` items: promoted items pinned or boosted, the model's
    /// `candidates` (best first) and then `popularity`, skipping seen, excluded and unavailable
    /// items and items over the genre cap. `model_score` gives the model's score of an item
    /// for this user (`None` for users the model does not cover).
    pub fn apply(
        &self,
        k: usize,
        candidates: &[(i64, f32)],
        model_score: &dyn Fn(i64) -> Option<f32>,
        seen: &dyn Fn(i64) -> bool,
        popularity: &Popularity,
    ) -> Vec<Placed> {
        let mut list = ListBuilder {
            rules: self,
            k,
            seen,
            per_genre: FastMap::default(),
            per_group: FastMap::default(),
            out: Vec::with_capacity(k),
        };
        let promoted = &self.promoted;
        match self.config.promote {
            PromoteMode::Pin => {
                let most = self.config.max_promoted.min(k);
                for &item in promoted {
                    if list.out.len() >= most {
                        break;
                    }
                    // Only items the night knows (the model or the window's popularity).
                    let score = model_score(item);
                    if score.is_some() || popularity.contains(item) {
                        list.offer(item, score.unwrap_or(0.0), sources::PROMOTED);
                    }
                }
                for &(item, score) in candidates {
                    list.offer(item, score, sources::ALS);
                }
            }
            PromoteMode::Boost => {
                let promoted_set: HashSet<i64> = promoted.iter().copied().collect();
                let mut scored: Vec<(i64, f32, &'static str)> = candidates
                    .iter()
                    .filter(|(i, _)| !promoted_set.contains(i))
                    .map(|&(i, s)| (i, s, sources::ALS))
                    .collect();
                for &item in promoted {
                    if let Some(s) = model_score(item) {
                        scored.push((item, s + self.config.boost, sources::PROMOTED));
                    }
                }
                // Stable: equal scores keep the model's order, promoted items after.
                scored.sort_by(|a, b| b.1.total_cmp(&a.1));
                for (item, score, source) in scored {
                    list.offer(item, score, source);
                }
            }
        }
        for &(item, users) in popularity.ranked() {
            if list.out.len() >= k {
                break;
            }
            list.offer(item, users as f32, sources::POPULAR);
        }
        list.out
    }
}

struct ListBuilder<'a> {
    rules: &'a OfferRules,
    k: usize,
    seen: &'a dyn Fn(i64) -> bool,
    per_genre: FastMap<&'a str, usize>,
    per_group: FastMap<(usize, &'a str), usize>,
    out: Vec<Placed>,
}

impl<'a> ListBuilder<'a> {
    /// Adds `item` if the list has room and every rule lets it in.
    fn offer(&mut self, item: i64, score: f32, source: &'static str) {
        if self.out.len() >= self.k
            || !self.rules.allowed(item)
            || (self.seen)(item)
            // At most K placed: a scan beats a hash set.
            || self.out.iter().any(|p| p.item_id == item)
        {
            return;
        }
        let cap = self.rules.genre_cap;
        let genres: &'a [String] = self.rules.genres.get(&item).map_or(&[], |g| g.as_slice());
        if cap > 0
            && genres
                .iter()
                .any(|g| self.per_genre.get(g.as_str()).copied().unwrap_or(0) >= cap)
        {
            return;
        }
        let groups: &'a [(usize, String)] =
            self.rules.groups.get(&item).map_or(&[], |g| g.as_slice());
        if groups.iter().any(|(c, v)| {
            self.per_group.get(&(*c, v.as_str())).copied().unwrap_or(0) >= self.rules.caps[*c].1
        }) {
            return;
        }
        if cap > 0 {
            for g in genres {
                *self.per_genre.entry(g.as_str()).or_default() += 1;
            }
        }
        for (c, v) in groups {
            *self.per_group.entry((*c, v.as_str())).or_default() += 1;
        }
        self.out.push(Placed {
            item_id: item,
            score,
            source,
        });
    }
}

fn bad(path: &str, reason: String) -> Error {
    Error::BadInput {
        path: path.into(),
        reason,
    }
}

/// The availability windows an export lists (none for exports made before layout 2).
pub async fn read_windows(lake: &Lake, export: &ExportManifest) -> Result<Vec<AvailabilityWindow>> {
    let mut out = Vec::new();
    for f in &export.availability_files {
        for batch in read_parquet(lake, &Path::from(f.path.as_str())).await? {
            out.extend(windows_of(&batch, &f.path)?);
        }
    }
    Ok(out)
}

fn windows_of(batch: &RecordBatch, path: &str) -> Result<Vec<AvailabilityWindow>> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| bad(path, format!("no column '{name}'")))
    };
    let ids = column(columns::ITEM_ID)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| bad(path, "item_id is not Int64".into()))?;
    let day = |name: &str| {
        column(name)?
            .as_primitive_opt::<Date32Type>()
            .cloned()
            .ok_or_else(|| bad(path, format!("{name} is not a Date32")))
    };
    let (from, to) = (day(columns::AVAILABLE_FROM)?, day(columns::AVAILABLE_TO)?);
    let text = |name: &str| {
        column(name)?
            .as_string_opt::<i32>()
            .cloned()
            .ok_or_else(|| bad(path, format!("{name} is not Utf8")))
    };
    let (region, segment) = (text(columns::REGION)?, text(columns::SEGMENT)?);
    let night = |a: &arrow_array::Date32Array, i: usize| {
        a.is_valid(i)
            .then(|| Night::from_days_since_epoch(a.value(i)))
            .flatten()
    };
    let string =
        |a: &arrow_array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    Ok((0..batch.num_rows())
        .map(|i| AvailabilityWindow {
            item_id: ids.value(i),
            from: night(&from, i),
            to: night(&to, i),
            region: string(&region, i),
            segment: string(&segment, i),
        })
        .collect())
}

/// The export's `[rules]` predicate flags and `max_per` column values (none for exports made
/// without them).
pub async fn read_item_rules(
    lake: &Lake,
    export: &ExportManifest,
) -> Result<(Vec<ItemFlags>, Vec<(i64, String, String)>)> {
    let mut flags = Vec::new();
    for f in &export.item_rule_files {
        for batch in read_parquet(lake, &Path::from(f.path.as_str())).await? {
            let ids = batch
                .column_by_name(columns::ITEM_ID)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| bad(&f.path, "no Int64 column item_id".into()))?;
            let flag = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_boolean_opt())
                    .cloned()
                    .ok_or_else(|| bad(&f.path, format!("no Boolean column {name}")))
            };
            let (excluded, promoted) = (flag("excluded")?, flag("promoted")?);
            flags.extend((0..batch.num_rows()).map(|i| ItemFlags {
                item_id: ids.value(i),
                excluded: excluded.value(i),
                promoted: promoted.value(i),
            }));
        }
    }
    let groups = read_item_values(lake, &export.item_group_files).await?;
    Ok((flags, groups))
}

/// Rows of `(item_id, attribute, value)` files: an export's `item-groups-*` (values of the
/// capped columns) or `item-attributes-*` (latest observed attributes).
pub async fn read_item_values(
    lake: &Lake,
    files: &[elastirec_core::manifest::FileEntry],
) -> Result<Vec<(i64, String, String)>> {
    let mut out = Vec::new();
    for f in files {
        for batch in read_parquet(lake, &Path::from(f.path.as_str())).await? {
            let ids = batch
                .column_by_name(columns::ITEM_ID)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| bad(&f.path, "no Int64 column item_id".into()))?;
            let text = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(|c| c.as_string_opt::<i32>())
                    .cloned()
                    .ok_or_else(|| bad(&f.path, format!("no Utf8 column {name}")))
            };
            let (attribute, value) = (text("attribute")?, text("value")?);
            out.extend((0..batch.num_rows()).map(|i| {
                (
                    ids.value(i),
                    attribute.value(i).to_string(),
                    value.value(i).to_string(),
                )
            }));
        }
    }
    Ok(out)
}

/// Item genres (`|`-separated) from an export's `items-*.parquet`.
pub async fn read_genres(lake: &Lake, export: &ExportManifest) -> Result<HashMap<i64, String>> {
    let mut out = HashMap::new();
    for f in &export.item_files {
        for batch in read_parquet(lake, &Path::from(f.path.as_str())).await? {
            let ids = batch
                .column_by_name(columns::ITEM_ID)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| bad(&f.path, "no Int64 column item_id".into()))?;
            let genres = batch
                .column_by_name(columns::GENRES)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| bad(&f.path, "no Utf8 column genres".into()))?;
            for i in 0..batch.num_rows() {
                if genres.is_valid(i) {
                    out.insert(ids.value(i), genres.value(i).to_string());
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> Night {
        s.parse().unwrap()
    }

    /// Configured item ids as TOML integers read them.
    fn ids(items: &[i64]) -> Vec<String> {
        items.iter().map(i64::to_string).collect()
    }

    /// Items 1..=8: model candidates best first; popularity ranks 8, 7, 6, … 1.
    fn candidates() -> Vec<(i64, f32)> {
        (1..=8).map(|i| (i, 10.0 - i as f32)).collect()
    }

    fn popularity() -> Popularity {
        // Item i is liked by i users.
        Popularity::from_pairs((1..=8).flat_map(|i| std::iter::repeat_n(i, i as usize)))
    }

    fn genres(pairs: &[(i64, &str)]) -> HashMap<i64, String> {
        pairs.iter().map(|&(i, g)| (i, g.to_string())).collect()
    }

    fn run(rules: &OfferRules, k: usize, seen: &[i64]) -> Vec<(i64, &'static str)> {
        let cands = candidates();
        let score = |i: i64| cands.iter().find(|c| c.0 == i).map(|c| c.1);
        rules
            .apply(k, &cands, &score, &|i| seen.contains(&i), &popularity())
            .into_iter()
            .map(|p| (p.item_id, p.source))
            .collect()
    }

    fn window(item: i64, from: Option<&str>, to: Option<&str>) -> AvailabilityWindow {
        AvailabilityWindow {
            item_id: item,
            from: from.map(day),
            to: to.map(day),
            region: None,
            segment: None,
        }
    }

    #[test]
    fn default_rules_change_nothing() {
        let rules = OfferRules::new(
            &RulesConfig::default(),
            day("2024-01-02"),
            &[],
            &HashMap::new(),
        );
        assert!(!rules.is_active());
        let list = run(&rules, 3, &[]);
        assert_eq!(list, vec![(1, "als"), (2, "als"), (3, "als")]);
    }

    #[test]
    fn excluded_items_are_never_offered() {
        let config = RulesConfig {
            exclude_items: ids(&[1, 3]),
            ..RulesConfig::default()
        };
        let rules = OfferRules::new(&config, day("2024-01-02"), &[], &HashMap::new());
        assert!(rules.is_active());
        assert_eq!(
            run(&rules, 3, &[]),
            vec![(2, "als"), (4, "als"), (5, "als")]
        );
    }

    #[test]
    fn unavailable_items_are_left_out_by_day_region_and_segment() {
        let windows = vec![
            // Item 1: available only until the day before the lists go live.
            window(1, Some("2024-01-01"), Some("2024-01-01")),
            // Item 2: open-ended from the lists' day: available.
            window(2, Some("2024-01-02"), None),
            // Item 3: in the EU only; item 4: for premium customers only, from later on.
            AvailabilityWindow {
                region: Some("eu".into()),
                ..window(3, Some("2024-02-01"), None)
            },
            AvailabilityWindow {
                segment: Some("premium".into()),
                ..window(4, None, Some("2023-12-31"))
            },
            // Item 5: two windows, one of them covers the day.
            window(5, None, Some("2023-01-01")),
            window(5, Some("2024-01-02"), Some("2024-01-02")),
        ];
        let live = day("2024-01-02");
        let plain = OfferRules::new(&RulesConfig::default(), live, &windows, &HashMap::new());
        let unavailable: std::collections::BTreeSet<i64> =
            plain.unavailable().iter().copied().collect();
        // Rows of a region or segment apply only where configured.
        assert_eq!(unavailable, [1].into_iter().collect());
        assert_eq!(
            run(&plain, 3, &[]),
            vec![(2, "als"), (3, "als"), (4, "als")]
        );
        let eu = RulesConfig {
            region: Some("eu".into()),
            segment: Some("premium".into()),
            ..RulesConfig::default()
        };
        let eu = OfferRules::new(&eu, live, &windows, &HashMap::new());
        assert_eq!(run(&eu, 3, &[]), vec![(2, "als"), (5, "als"), (6, "als")]);
        let off = RulesConfig {
            exclude_unavailable: false,
            ..RulesConfig::default()
        };
        let off = OfferRules::new(&off, live, &windows, &HashMap::new());
        assert!(!off.is_active());
    }

    #[test]
    fn at_most_n_items_of_one_genre() {
        let g = genres(&[
            (1, "Drama"),
            (2, "Drama|Comedy"),
            (3, "Drama"),
            (4, "Comedy"),
            (5, "Comedy"),
            (6, "Horror"),
        ]);
        let config = RulesConfig {
            max_per_genre: 2,
            ..RulesConfig::default()
        };
        let rules = OfferRules::new(&config, day("2024-01-02"), &[], &g);
        // 1 Drama, 2 Drama+Comedy, 3 would be a third Drama, 4 a second Comedy, 5 a third.
        assert_eq!(
            run(&rules, 5, &[]),
            vec![(1, "als"), (2, "als"), (4, "als"), (6, "als"), (7, "als")]
        );
    }

    #[test]
    fn promoted_items_are_pinned_or_boosted() {
        let pin = RulesConfig {
            promoted_items: ids(&[6, 7, 99]),
            max_promoted: 2,
            ..RulesConfig::default()
        };
        let rules = OfferRules::new(&pin, day("2024-01-02"), &[], &HashMap::new());
        assert_eq!(
            run(&rules, 4, &[]),
            vec![(6, "promoted"), (7, "promoted"), (1, "als"), (2, "als")]
        );
        // A promoted item the user has seen is not pinned; the next one is.
        assert_eq!(
            run(&rules, 3, &[6]),
            vec![(7, "promoted"), (1, "als"), (2, "als")]
        );
        let boost = RulesConfig {
            promoted_items: ids(&[5]),
            promote: PromoteMode::Boost,
            boost: 2.5,
            ..RulesConfig::default()
        };
        let rules = OfferRules::new(&boost, day("2024-01-02"), &[], &HashMap::new());
        // Item 5 scores 5 + 2.5 = 7.5: past item 3 (7.0), behind item 2 (8.0).
        assert_eq!(
            run(&rules, 4, &[]),
            vec![(1, "als"), (2, "als"), (5, "promoted"), (3, "als")]
        );
    }

    #[test]
    fn lists_emptied_by_rules_are_filled_from_popularity_and_flagged() {
        // The model offers only items 1..=8, all excluded or unavailable but 8; popularity also
        // knows items 9 and 10 (most popular first: 10, 9, 8, …).
        let config = RulesConfig {
            exclude_items: ids(&[1, 2, 3, 4, 5]),
            max_per_genre: 1,
            ..RulesConfig::default()
        };
        let windows = vec![window(6, None, Some("2020-01-01"))];
        let g = genres(&[(7, "Drama"), (8, "Drama"), (9, "Comedy"), (10, "Drama")]);
        let rules = OfferRules::new(&config, day("2024-01-02"), &windows, &g);
        let pop = Popularity::from_pairs((1..=10).flat_map(|i| std::iter::repeat_n(i, i as usize)));
        let cands = candidates();
        let list: Vec<(i64, &str)> = rules
            .apply(4, &cands, &|_| None, &|_| false, &pop)
            .into_iter()
            .map(|p| (p.item_id, p.source))
            .collect();
        // 7 from the model (Drama); 8 and 10 are Drama too; 9 (Comedy) from popularity; then
        // nothing else is left in the whole catalogue: the list is shorter than K.
        assert_eq!(list, vec![(7, "als"), (9, "popular")]);
        // A user the model does not cover gets popularity under the same rules.
        let fallback: Vec<(i64, &str)> = rules
            .apply(3, &[], &|_| None, &|i| i == 9, &pop)
            .into_iter()
            .map(|p| (p.item_id, p.source))
            .collect();
        assert_eq!(fallback, vec![(10, "popular")]);
        // Fewer than K after the model: filled up to K with popularity, flagged.
        let config = RulesConfig {
            exclude_items: ids(&[3, 4, 5, 6, 7, 8]),
            ..RulesConfig::default()
        };
        let rules = OfferRules::new(&config, day("2024-01-02"), &[], &HashMap::new());
        let list: Vec<(i64, &str)> = rules
            .apply(4, &cands, &|_| None, &|_| false, &pop)
            .into_iter()
            .map(|p| (p.item_id, p.source))
            .collect();
        assert_eq!(
            list,
            vec![(1, "als"), (2, "als"), (10, "popular"), (9, "popular")]
        );
    }
}
