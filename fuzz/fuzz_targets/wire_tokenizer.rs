//! The conformance runner's server-line framer, tokenizer and sent-command reader fed
//! arbitrary bytes in arbitrary chunkings: no panic, spans in bounds, chunking invariance.
//! Input layout and checks: `fuzz/common/conformance_checks.rs`.
#![no_main]

#[allow(dead_code)]
mod checks {
    include!("../common/conformance_checks.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_wire_tokenizer(data);
});
