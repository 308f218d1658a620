//! `mupdated`: the MUPDATE master/slave binary (being written).
fn main() {}
