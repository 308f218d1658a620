//! `conformance`: the black-box runner (being written).
fn main() {}
