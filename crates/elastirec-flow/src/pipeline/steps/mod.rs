//! The body of each step of a night, one module per step: what it runs, and what its run
//! record says of it. Each step also has a public method for running it alone (`ingest`,
//! `prepare`, `train`, …), recorded under the night's run record too.

mod evaluate;
mod ingest;
mod prepare;
mod publish;
mod recommend;
mod sink;
mod snapshot;
mod train;
