//! The scenario corpus: embedded in the binary at build time (`build.rs` includes every
//! `scenarios/**/*.scn`), or read from a directory given with `--scenarios`.

use std::path::Path;

use crate::scenario::{ParseError, Scenario, parse_scenario};

mod embedded_files {
    include!(concat!(env!("OUT_DIR"), "/corpus.rs"));
}

/// One scenario file's text, by its path under `scenarios/`.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path relative to the corpus root, `/`-separated (`mupdate/reserve-new.scn`).
    pub path: String,
    /// File text.
    pub text: String,
}

impl SourceFile {
    /// The id the path implies: the path without `.scn`.
    pub fn implied_id(&self) -> &str {
        self.path.strip_suffix(".scn").unwrap_or(&self.path)
    }
}

/// Why the corpus cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// A file that cannot be read.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A file that is not UTF-8.
    #[error("{0}: not UTF-8")]
    Utf8(String),
    /// A file that does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// Two files with one id.
    #[error("duplicate id {0} ({1} and {2})")]
    DuplicateId(String, String, String),
}

/// The files compiled into this binary.
pub fn embedded() -> Result<Vec<SourceFile>, CorpusError> {
    embedded_files::FILES
        .iter()
        .map(|(path, bytes)| {
            let text =
                std::str::from_utf8(bytes).map_err(|_| CorpusError::Utf8(path.to_string()))?;
            Ok(SourceFile {
                path: path.to_string(),
                text: text.to_string(),
            })
        })
        .collect()
}

/// Every `*.scn` under `dir`.
pub fn from_dir(dir: &Path) -> Result<Vec<SourceFile>, CorpusError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) -> Result<(), CorpusError> {
        let io = |e| CorpusError::Io(dir.display().to_string(), e);
        let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io)?.flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if p.extension().is_some_and(|x| x == "scn") {
                let rel = p
                    .strip_prefix(root)
                    .map(|r| r.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_else(|_| p.display().to_string());
                let bytes =
                    std::fs::read(&p).map_err(|e| CorpusError::Io(p.display().to_string(), e))?;
                let text = String::from_utf8(bytes).map_err(|_| CorpusError::Utf8(rel.clone()))?;
                out.push(SourceFile { path: rel, text });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Parse every file; ids must be unique.
pub fn parse_all(files: &[SourceFile]) -> Result<Vec<Scenario>, CorpusError> {
    let mut out: Vec<Scenario> = Vec::new();
    for f in files {
        let sc = parse_scenario(&f.path, &f.text)?;
        if let Some(other) = out.iter().find(|o| o.meta.id == sc.meta.id) {
            return Err(CorpusError::DuplicateId(
                sc.meta.id.clone(),
                other.path.clone(),
                f.path.clone(),
            ));
        }
        out.push(sc);
    }
    Ok(out)
}
