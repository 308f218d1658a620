//! Reading the JSON report of a run in the runner's own tests (`--json FILE`).
// Each test crate uses only some of these helpers.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;

/// The report at `path`.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(id, grade)` of every case of a report.
pub fn grades_of(report: &serde_json::Value) -> Vec<(String, String)> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["grade"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The report entry of case `id`.
pub fn case<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {report:#}"))
}
