//! Every scenario file in `scenarios/` parses, has an id matching its path, and (MUPDATE) agrees
//! with the oracle. Also checks that the embedded copy is the same as the directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use conformance::corpus;
use conformance::scenario::parse_scenario;
use conformance::scenario::validate::validate;

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

#[test]
fn every_scenario_parses_and_agrees_with_the_oracle() {
    let files = corpus::from_dir(&dir()).unwrap();
    assert!(!files.is_empty(), "no scenario files found");
    let mut problems = Vec::new();
    for f in &files {
        match parse_scenario(&f.path, &f.text) {
            Err(e) => problems.push(e.to_string()),
            Ok(sc) => {
                if let Err(errs) = validate(&sc, Some(f.implied_id())) {
                    problems.extend(errs.iter().map(ToString::to_string));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "scenario problems:\n{}",
        problems.join("\n")
    );
    corpus::parse_all(&files).unwrap();
}

#[test]
fn embedded_corpus_matches_the_directory() {
    let mut on_disk: Vec<(String, String)> = corpus::from_dir(&dir())
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.text))
        .collect();
    let mut embedded: Vec<(String, String)> = corpus::embedded()
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.text))
        .collect();
    on_disk.sort();
    embedded.sort();
    assert_eq!(on_disk, embedded);
}
