//! A whole mupdated session: one loopback connection per input (optionally after AUTHENTICATE), then a fresh connection's NOOP must still be answered and no thread may have panicked.
//! Input layout and checks: `fuzz/common/checks.rs`.
#![no_main]

#[allow(dead_code)]
mod checks {
    include!("../common/checks.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_mupdate_session(data);
});
