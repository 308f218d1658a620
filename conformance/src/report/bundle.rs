//! Failure bundles: a directory per failed case holding `bundle.json` (scenario text, run id and
//! case index = the seed of its names, failure, transcript), `scenario.txt` and
//! `transcript.txt`. `conformance replay DIR` runs the same scenario with the same names again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::human::failure_block;
use crate::run::exec::Failure;
use crate::run::suite::CaseReport;
use crate::run::transcript::{Event, render};

/// The content of `bundle.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bundle {
    /// Case id.
    pub id: String,
    /// Scenario path in the corpus.
    pub path: String,
    /// Scenario text as run.
    pub scenario: String,
    /// Run id of the failing run (the seed of the unique names).
    pub run_id: String,
    /// Case index in that run (also part of the names).
    pub index: usize,
    /// The target it failed against.
    pub target: String,
    /// Grade.
    pub grade: String,
    /// The failure.
    pub failure: Option<Failure>,
    /// Every event.
    pub transcript: Vec<Event>,
}

/// Why a bundle cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// File system.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// Bad JSON.
    #[error("{0}: {1}")]
    Json(PathBuf, serde_json::Error),
}

/// Write the bundle of `r` under `dir`; returns its directory.
pub fn write(dir: &Path, r: &CaseReport) -> Result<PathBuf, BundleError> {
    let name: String =
        r.id.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
    let d = dir.join(name);
    let io = |p: &Path, e| BundleError::Io(p.to_path_buf(), e);
    std::fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
    let b = Bundle {
        id: r.id.clone(),
        path: r.path.clone(),
        scenario: r.source.clone(),
        run_id: r.run_id.clone(),
        index: r.index,
        target: r.target.clone(),
        grade: r.grade.to_string(),
        failure: r.failure.clone(),
        transcript: r.transcript.clone(),
    };
    let json = serde_json::to_string_pretty(&b).map_err(|e| BundleError::Json(d.clone(), e))?;
    let files = [
        ("bundle.json", json),
        ("scenario.txt", r.source.clone()),
        ("transcript.txt", render(&r.transcript)),
        ("failure.txt", failure_block(r)),
    ];
    for (f, text) in files {
        let p = d.join(f);
        std::fs::write(&p, text).map_err(|e| io(&p, e))?;
    }
    Ok(d)
}

/// Read a bundle from its directory or its `bundle.json`.
pub fn read(path: &Path) -> Result<Bundle, BundleError> {
    let file = if path.is_dir() {
        path.join("bundle.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| BundleError::Io(file.clone(), e))?;
    serde_json::from_str(&text).map_err(|e| BundleError::Json(file, e))
}
