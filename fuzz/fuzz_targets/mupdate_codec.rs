//! The MUPDATE command decoder fed arbitrary bytes in arbitrary chunkings: no panic, bounded buffering, literal limits, chunking invariance, re-encode round trip.
//! Input layout and checks: `fuzz/common/checks.rs`.
#![no_main]

#[allow(dead_code)]
mod checks {
    include!("../common/checks.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_mupdate_codec(data);
});
