//! Integration tests of serving: a hand-made lake with a known answer, the API through the
//! router without a socket, one real socket and the atomic swap.

mod fixture;
mod foldin;
mod router;
mod security;
mod socket;
mod strings;
mod swap;
