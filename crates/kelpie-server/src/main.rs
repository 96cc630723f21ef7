//! `kelpie-server` (being built).
fn main() {}
