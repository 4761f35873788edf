//! Integration tests of serving: a hand-made lake with a known answer, the API through the
//! router without a socket, one real socket, the atomic swap, and publishing to Redis and
//! PostgreSQL.

mod fixture;
mod router;
mod sink;
mod socket;
mod swap;
