//! mupdate (being written).
