//! Shared vocabulary of every elastirec stage.
//!
//! Nothing here does heavy work: it names things. A night ([`Night`]) is a UTC calendar day; the
//! lake layout ([`layout`]) is the single place that turns a night and an artefact into an object
//! path; [`Lake`] reads and writes whole objects under the lake root; [`manifest`] holds the JSON
//! documents that stages leave for each other; [`Config`] is the validated `elastirec.toml`.
//!
//! Stages meet only through files described here:
//!
//! ```text
//!  raw/events/YYYY/MM/DD/*.csv ──ingest──▶ warehouse/{events,items,loads}
//!        ──prepare──▶ exports/training/YYYY/MM/DD/ ──train──▶ models/YYYY/MM/DD/
//!        ──recommend──▶ recommendations/YYYY/MM/DD/ + recommendations/_LATEST ──▶ serving
//! ```

mod aws;
pub mod config;
pub mod error;
pub mod failpoint;
pub mod fence;
pub mod foldin;
pub mod generation;
pub mod ids;
pub mod lake;
pub mod layout;
pub mod manifest;
pub mod night;
pub mod rng;
pub mod tls;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use fence::Fence;
pub use lake::Lake;
pub use night::Night;
