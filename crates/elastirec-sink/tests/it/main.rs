//! Integration tests of the sinks: a night's lists copied into the real Redis (127.0.0.1:6379)
//! and PostgreSQL (127.0.0.1:5432, database test) that the test command makes sure are running.

/// Serving's known lake (six items, three users, one or two nights): the sinks copy the same
/// lists the serving tests read, so both use one fixture file.
#[allow(dead_code)]
#[path = "../../../elastirec-serve/tests/it/fixture.rs"]
mod fixture;
mod secure;
mod sink;
