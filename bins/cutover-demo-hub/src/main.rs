//! The demo service (being written).
fn main() {}
