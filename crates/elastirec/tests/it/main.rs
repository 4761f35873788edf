//! End-to-end tests of the `elastirec` binary on real files: fixtures, MovieLens 100K and the
//! simulator, and on an S3 endpoint (moto). Each test works in its own temporary lake.

mod governance;
mod harness;
mod import;
mod movielens_100k;
mod orchestrator;
mod real_events;
mod s3;
mod serve;
mod simulated;
mod spark;
mod tune;
mod warehouse;
