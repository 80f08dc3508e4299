//! Placeholder, replaced by the router bench.
fn main() {}
