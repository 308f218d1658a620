//! The conformance runner's scenario parser, validator, templates and patterns fed arbitrary
//! text: no panic. Checks: `fuzz/common/conformance_checks.rs`.
#![no_main]

#[allow(dead_code)]
mod checks {
    include!("../common/conformance_checks.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::check_scenario_parser(data);
});
