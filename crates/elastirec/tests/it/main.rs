//! End-to-end tests of the `elastirec` binary on real files: fixtures, MovieLens 100K and the
//! simulator. Each test works in its own temporary lake.

mod harness;
mod import;
mod movielens_100k;
mod serve;
mod simulated;
