//! A whole imapd session: one loopback connection per input (optionally after LOGIN and SELECT INBOX), then a fresh connection's NOOP must still be answered and no thread may have panicked.
//! Input layout and checks: `fuzz/common/checks.rs`.
#![no_main]

#[allow(dead_code)]
mod checks {
    include!("../common/checks.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_imap_session(data);
});
