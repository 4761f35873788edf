//! What the pipeline takes from `elastirec_als`: the train, recommend and evaluate work and the
//! readers of the lake artefacts they write. Named in this one place, so that moving the
//! readers to another crate changes only this file.

pub(super) use elastirec_als::evaluate::{Holdout, evaluate_night};
pub(super) use elastirec_als::stage::{
    publish_latest, read_export_manifest, read_latest, read_model_info,
    read_recommendations_manifest, recommend_night_with, train_night,
};
