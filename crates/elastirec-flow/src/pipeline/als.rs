//! What the pipeline takes from other stages: the train, recommend and evaluate work of
//! `elastirec_als`, and the readers of the lake artefacts they leave (`elastirec_lake`).
//! Named in this one place, so the steps' modules import them from here.

pub(super) use elastirec_als::evaluate::{Holdout, evaluate_night};
pub(super) use elastirec_als::stage::{recommend_night_with, train_night};
pub(super) use elastirec_lake::{
    publish_latest, read_export_manifest, read_latest, read_model_info,
    read_recommendations_manifest,
};
