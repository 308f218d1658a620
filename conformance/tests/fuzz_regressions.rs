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
