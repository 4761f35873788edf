//! Collaborative filtering for elastirec: implicit-feedback ALS, top-K and ranking metrics.
//!
//! Reads the training export (Parquet files listed by a manifest) with `arrow`/`parquet` only;
//! writes the model and the recommendations, each folder with its manifest written last.
//!
//! ```text
//!  exports/training/D/ ──▶ Interactions (sorted id maps, CSR by user and by item)
//!                               │
//!                               ▼
//!          ImplicitAls::fit (conjugate gradient or exact Cholesky per row, rayon)
//!          or ExplicitAls::fit (ALS-WR with biases, Cholesky per row)
//!                               │
//!                               ▼
//!  models/D/{user,item}_factors.parquet, model.json
//!                               │  (model::Model::load reads them back to score)
//!                               ▼
//!          top_k (blocked GEMM + bounded heap, seen items excluded)
//!                               │  offer rules ([rules]: availability, exclusions, genre
//!                               │  cap, promotions; fill from popularity)
//!                               ▼
//!  recommendations/D/part-*.parquet, _manifest.json, recommendations/_LATEST
//! ```
//!
//! [`foldin`] solves one user's factors against a loaded model's item factors (users the night
//! never saw, or what a user did since), with training's confidence and regularization.

pub mod data;
pub mod erase;
pub mod evaluate;
pub mod explicit;
pub mod foldin;
pub mod implicit;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod reference;
pub mod stage;
pub mod topk;
pub mod tune;

pub use data::Interactions;
/// Offer rules and the popularity ranking live below the stages (`elastirec-lake`) because
/// serving applies the same rules to the lists it folds in; re-exported under their old paths.
pub use elastirec_lake::{popularity, rules};
pub use explicit::{ExplicitAls, ExplicitModel};
pub use implicit::{Confidence, Factors, ImplicitAls, Solver};
pub use model::Model;

/// The trainer's errors are the artefact errors of `elastirec-lake` (missing input, bad file,
/// Parquet, lake access, internal), so a missing export reads the same in every stage.
pub use elastirec_lake::{Error, Result};
