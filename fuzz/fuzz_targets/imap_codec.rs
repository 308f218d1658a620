//! The IMAP framer and command parser fed arbitrary bytes in arbitrary chunkings: no panic, bounded buffering, literal accounting, chunking invariance.
//! Input layout and checks: `fuzz/common/checks.rs`.
#![no_main]

#[allow(dead_code)]
mod checks {
    include!("../common/checks.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_imap_codec(data);
});
