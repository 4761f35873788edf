//! The sections about the model and its lists: `[model]`, `[recommend]`, `[rules]`,
//! `[evaluate]` and `[publish]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How ALS solves each row's least-squares problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SolverKind {
    /// A few conjugate-gradient steps, warm-started from the previous iteration (fast).
    Cg,
    /// An exact Cholesky solve per row (slow, for checking).
    Cholesky,
}

/// What the values of the training export mean to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    /// Values are confidences of a preference (clicks, plays): implicit-feedback ALS, which
    /// ranks items.
    Implicit,
    /// Values are ratings to predict: ALS-WR (regularization scaled by each row's count), with
    /// optional user and item biases; reports RMSE.
    Explicit,
}

/// How implicit feedback turns a value into a confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfidenceKind {
    /// c = 1 + alpha·value.
    Linear,
    /// c = 1 + alpha·ln(1 + value/epsilon).
    Log,
}

/// Which engine trains the model and writes the lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// elastirec's own ALS, in this process (the default and the fastest on one machine).
    #[default]
    Als,
    /// One Apache Spark job (MLlib ALS) does the train and recommend steps (`[spark]`).
    Spark,
}

impl Engine {
    /// The engine's name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Als => "als",
            Engine::Spark => "spark",
        }
    }
}

/// `[model]`: the ALS model: implicit feedback (Hu, Koren, Volinsky 2008) or explicit ratings
/// (ALS-WR, Zhou et al. 2008).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Implicit (confidences, ranking) or explicit (ratings, RMSE).
    pub feedback: FeedbackKind,
    /// Number of latent factors.
    pub factors: usize,
    /// Alternating sweeps (implicit: items, then users; explicit: users, then items).
    pub iterations: usize,
    /// L2 regularization λ.
    pub regularization: f32,
    /// Confidence scale α: c = 1 + α·value.
    pub alpha: f32,
    /// Seed of the initial factors.
    pub seed: u64,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Row solver.
    pub solver: SolverKind,
    /// Conjugate-gradient steps per row and iteration (with `solver = "cg"`).
    pub cg_steps: usize,
    /// Confidence of implicit feedback: linear or log.
    pub confidence: ConfidenceKind,
    /// Scale ε of `confidence = "log"`.
    pub epsilon: f32,
    /// Stop early once an iteration lowers the loss by less than this fraction (0: never).
    pub tolerance: f64,
    /// Explicit feedback: learn a global mean and user and item biases beside the factors.
    pub biases: bool,
    /// `als` (in process) or `spark` (one Spark job for train and recommend, see `[spark]`).
    pub engine: Engine,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            factors: 32,
            iterations: 15,
            regularization: 0.05,
            alpha: 1.0,
            seed: 42,
            threads: 0,
            solver: SolverKind::Cg,
            cg_steps: 3,
            feedback: FeedbackKind::Implicit,
            confidence: ConfidenceKind::Linear,
            epsilon: 1.0,
            tolerance: 0.0,
            biases: true,
            engine: Engine::Als,
        }
    }
}

/// `[recommend]`: the published lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendConfig {
    /// Items per user.
    pub k: usize,
}

impl Default for RecommendConfig {
    fn default() -> Self {
        RecommendConfig { k: 10 }
    }
}

/// How promoted items enter a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromoteMode {
    /// First in the list, in the configured order (up to `max_promoted`).
    Pin,
    /// Their model score is raised by `boost`; they compete with the other items.
    Boost,
}

/// `[rules]`: business rules the recommend step applies to every list; the model is unchanged.
/// Rules only remove or reorder items; a list they leave shorter than K is filled from the
/// popularity ranking (`source = popular`), under the same rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Leave out items that `warehouse/availability` (from `raw/availability/*.csv`) says are
    /// not available on the day the lists go live (the night after D). Items without any
    /// availability row are available.
    pub exclude_unavailable: bool,
    /// Availability rows of this region apply besides rows without a region (unset: only rows
    /// without a region apply).
    pub region: Option<String>,
    /// Availability rows of this segment apply besides rows without a segment.
    pub segment: Option<String>,
    /// Items never recommended, by the ids producers send (`["B00ABC", "42"]`; TOML integers
    /// are read as their digits).
    #[serde(deserialize_with = "external_ids")]
    pub exclude_items: Vec<String>,
    /// At most this many items of one genre in a list (genres of `warehouse/items`,
    /// `|`-separated; an item counts once for each of its genres); 0: no cap.
    pub max_per_genre: usize,
    /// Items the business promotes (`source = promoted` when a rule placed them), by external
    /// id, in order of preference.
    #[serde(deserialize_with = "external_ids")]
    pub promoted_items: Vec<String>,
    /// How promoted items enter a list.
    pub promote: PromoteMode,
    /// Added to a promoted item's score with `promote = "boost"`.
    pub boost: f32,
    /// Promoted items per list at most with `promote = "pin"`.
    pub max_promoted: usize,
    /// Items never offered: an SQL predicate over the night's catalog (`item_id`, `title`,
    /// `genres`), such as `genres LIKE '%Horror%' OR item_id = 42`; evaluated by the warehouse
    /// when the night's input is prepared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_where: Option<String>,
    /// Only items matching this predicate are offered (an item the catalog cannot tell, with a
    /// null result, is not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_where: Option<String>,
    /// Items matching this predicate are promoted as `promoted_items` are (after them, in item
    /// id order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promote_where: Option<String>,
    /// Diversity caps by catalog column: at most N items with one value of the column in a list
    /// (`{ genres = 2, title = 1 }`); `genres` counts each `|`-separated genre, as
    /// `max_per_genre` (which stays: `max_per_genre = N` is `max_per = { genres = N }`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub max_per: BTreeMap<String, usize>,
}

impl RulesConfig {
    /// Every diversity cap, `max_per_genre` as `genres`.
    pub fn caps(&self) -> BTreeMap<String, usize> {
        let mut caps = self.max_per.clone();
        if self.max_per_genre > 0 {
            caps.entry("genres".to_string())
                .or_insert(self.max_per_genre);
        }
        caps.retain(|_, n| *n > 0);
        caps
    }

    /// What the warehouse evaluates over the catalog for these rules (see [`ItemRules`]).
    pub fn item_rules(&self) -> ItemRules {
        ItemRules {
            exclude_where: self.exclude_where.clone(),
            include_where: self.include_where.clone(),
            promote_where: self.promote_where.clone(),
            // Genres come with the items export; other columns need the catalog.
            group_by: self.caps().into_keys().filter(|c| c != "genres").collect(),
            declared: Vec::new(),
            types: BTreeMap::new(),
            deletions: false,
        }
    }
}

/// The parts of `[rules]` that are SQL over the catalog, evaluated when the night's input is
/// prepared: the export then says, per item, whether it is excluded or promoted and its value
/// of each capped column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ItemRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_where: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_where: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_where: Option<String>,
    /// Catalog columns of the diversity caps (other than `genres`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Attribute columns the catalog has even before any value was observed (`[items]
    /// from_events`, by column name): null until then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub declared: Vec<String>,
    /// Declared attribute types (`[items.attributes]`); others are inferred from the values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub types: BTreeMap<String, crate::config::AttributeType>,
    /// Whether catalog feeds can delete items (`[items] deleted_column`): deleted items are
    /// excluded like a predicate's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deletions: bool,
}

impl ItemRules {
    /// Whether there is nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        self.exclude_where.is_none()
            && self.include_where.is_none()
            && self.promote_where.is_none()
            && self.group_by.is_empty()
            && !self.deletions
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            exclude_unavailable: true,
            region: None,
            segment: None,
            exclude_items: Vec::new(),
            max_per_genre: 0,
            promoted_items: Vec::new(),
            promote: PromoteMode::Pin,
            boost: 1.0,
            max_promoted: 1,
            exclude_where: None,
            include_where: None,
            promote_where: None,
            max_per: BTreeMap::new(),
        }
    }
}

/// A list of external ids written as TOML strings or integers (MovieLens configs name items by
/// number: `exclude_items = [4, 5]`).
fn external_ids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(i64),
        Text(String),
    }
    let ids = Vec::<Id>::deserialize(d)?;
    Ok(ids
        .into_iter()
        .map(|id| match id {
            Id::Number(n) => n.to_string(),
            Id::Text(s) => s,
        })
        .collect())
}

/// `[evaluate]`: the nightly evaluation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluateConfig {
    /// Night D's run evaluates night D − horizon_days against the events of the days after it,
    /// which D's load completed.
    pub horizon_days: u32,
}

impl Default for EvaluateConfig {
    fn default() -> Self {
        EvaluateConfig { horizon_days: 7 }
    }
}

/// Which list-maker the publish gate compares the model with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateBaseline {
    /// Each user's most popular unseen items (the fallback the model replaces).
    Popularity,
    /// One most-popular list for everyone.
    MostPopular,
}

/// `[publish]`: the checks a night must pass before `recommendations/_LATEST` moves to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Publish a night on which no events arrived.
    pub allow_empty_night: bool,
    /// Hold a night whose users with recommendations fall below this share of the published
    /// night's (0 turns the check off).
    pub min_users_ratio: f64,
    /// Hold a night when the newest evaluation of an earlier night found the model worse than
    /// the baseline.
    pub require_model_beats_baseline: bool,
    /// The baseline of that check.
    pub baseline: GateBaseline,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            allow_empty_night: false,
            min_users_ratio: 0.5,
            require_model_beats_baseline: true,
            baseline: GateBaseline::MostPopular,
        }
    }
}
