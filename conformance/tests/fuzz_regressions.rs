//! Replays the seed corpora and saved regression inputs of the fuzz targets `scenario_parser`
//! and `wire_tokenizer` (`fuzz/seeds/<target>/`, `fuzz/regressions/<target>/`) through the same
//! checks cargo-fuzz runs (`fuzz/common/conformance_checks.rs`), without libFuzzer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

#[allow(dead_code, missing_docs)]
mod checks {
    include!("../../fuzz/common/conformance_checks.rs");
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn scenario_parser_corpus() {
    checks::replay_inputs(
        &fuzz_dir(),
        "scenario_parser",
        20,
        &[],
        checks::check_scenario_parser,
    );
}

/// Saved `wire_tokenizer` inputs of the known framer bug (see
/// `checks::WIRE_MAX_LINE_UNFIXED`): they pass the default check and fail the strict one.
const WIRE_UNFIXED: &[&str] = &[
    "literals-line-over-max-line",
    "line-over-max-line-in-one-read",
];

#[test]
fn wire_tokenizer_corpus() {
    checks::replay_inputs(
        &fuzz_dir(),
        "wire_tokenizer",
        20,
        &[],
        checks::check_wire_tokenizer,
    );
}

/// The framer used to accept a server line longer than `max_line` when it arrived in one read,
/// and refuse it when it arrived in pieces (found by the `wire_tokenizer` fuzz target; fixed).
#[test]
fn wire_line_limit_regardless_of_reads() {
    for name in WIRE_UNFIXED {
        let path = fuzz_dir().join("regressions/wire_tokenizer").join(name);
        let data = std::fs::read(&path).unwrap();
        checks::check_wire_tokenizer_strict(&data);
    }
}

/// A `${repeat:1048576:...}` inside a `<~` regex made the regex parser take gigabytes (found by
/// the `scenario_parser` fuzz target as an out-of-memory): now the scenario parser refuses a
/// regex longer than `template::MAX_REGEX_LEN` before expanding or compiling it.
#[test]
fn a_huge_regex_is_refused_not_compiled() {
    let path = fuzz_dir().join("regressions/scenario_parser/regex-repeat-oom-9be56f1b2");
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    let err = conformance::scenario::parse_scenario("oom.scn", &text).unwrap_err();
    assert!(err.to_string().contains("regex longer than"), "{err}");
}
