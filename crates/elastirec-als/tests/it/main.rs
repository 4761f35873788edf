//! Integration tests of the trainer: fast kernels against their slow references.

mod kernels;
