//! Integration tests of the trainer: fast kernels against their slow references, explicit
//! feedback, and models read back from a lake.

mod explicit;
mod foldin;
mod kernels;
mod model;
