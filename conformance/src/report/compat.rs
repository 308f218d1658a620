//! `conformance report FILE.json...`: a Markdown compatibility table from the JSON reports of
//! earlier runs (one row per target: name and version from its greeting, counts by level, a link
//! to its expected-failure file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;

use super::{EXIT_OK, EXIT_USAGE};

/// Arguments of `conformance report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// JSON reports (`--json` of earlier runs), one row each, in this order.
    #[arg(value_name = "JSON", required = true)]
    pub reports: Vec<PathBuf>,
    /// Directory of expected-failure files named `<stem of the JSON file>.txt`; rows link to the
    /// one that exists.
    #[arg(long, value_name = "DIR")]
    pub expect_fail_dir: Option<PathBuf>,
}

/// The part of a JSON report the table needs.
#[derive(Debug, Deserialize)]
struct Doc {
    targets: Vec<DocTarget>,
    cases: Vec<DocCase>,
}

#[derive(Debug, Deserialize)]
struct DocTarget {
    addr: String,
    info: DocInfo,
}

#[derive(Debug, Deserialize)]
struct DocInfo {
    protocol: String,
    greeting: String,
}

#[derive(Debug, Deserialize)]
struct DocCase {
    protocol: String,
    level: String,
    grade: String,
    #[serde(default)]
    waived: Option<String>,
}

/// Counts of one (target, level).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    pass: usize,
    fail: usize,
    non_strict: usize,
    na: usize,
    not_run: usize,
}

impl Tally {
    fn cell(&self) -> String {
        let mut s = format!(
            "{} / {} / {} / {}",
            self.pass, self.fail, self.non_strict, self.na
        );
        if self.not_run > 0 {
            let _ = write!(s, " ({} not run)", self.not_run);
        }
        s
    }
}

/// The product name in a greeting: MUPDATE's `* OK MUPDATE "host" "Impl" "version" ...`, or an
/// IMAP greeting's text after the response code.
pub fn product_of(greeting: &str) -> String {
    let quoted: Vec<&str> = greeting.split('"').skip(1).step_by(2).collect();
    if greeting.contains(" MUPDATE ")
        && let [_, name, version, ..] = quoted.as_slice()
    {
        return format!("{name} {version}");
    }
    let text = match greeting.find("] ") {
        Some(i) => greeting.get(i + 2..).unwrap_or(greeting),
        None => greeting.trim_start_matches("* OK").trim(),
    };
    text.trim().to_string()
}

fn row(path: &std::path::Path, dir: Option<&std::path::Path>) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: Doc = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut out = String::new();
    for t in &doc.targets {
        let mut by: BTreeMap<&str, Tally> = BTreeMap::new();
        for c in doc.cases.iter().filter(|c| c.protocol == t.info.protocol) {
            let e = by.entry(level_column(&c.level)).or_default();
            match c.grade.as_str() {
                "PASS" => e.pass += 1,
                "FAIL" => e.fail += 1,
                "NON-STRICT" => e.non_strict += 1,
                "N/A" => e.na += 1,
                _ => e.not_run += 1,
            }
        }
        let waived = doc
            .cases
            .iter()
            .filter(|c| c.protocol == t.info.protocol && c.waived.is_some())
            .count();
        let cell = |l: &str| by.get(l).map(Tally::cell).unwrap_or_else(|| "-".into());
        let link = match dir {
            Some(d) if d.join(format!("{stem}.txt")).exists() => {
                let p = d.join(format!("{stem}.txt"));
                format!("[{0} listed]({1})", waived, p.display())
            }
            _ => "none".to_string(),
        };
        let _ = writeln!(
            out,
            "| {stem} | {} | {} | {} | {} | {} | {} | {link} |",
            product_of(&t.info.greeting).replace('|', "\\|"),
            t.info.protocol,
            t.addr,
            cell("MUST"),
            cell("SHOULD"),
            cell("ROBUSTNESS"),
        );
    }
    Ok(out)
}

/// MAY cases count with SHOULD (both are graded NON-STRICT when they fail).
fn level_column(level: &str) -> &'static str {
    match level {
        "MUST" => "MUST",
        "ROBUSTNESS" => "ROBUSTNESS",
        _ => "SHOULD",
    }
}

/// Render the table for these reports.
pub fn render(args: &ReportArgs) -> Result<String, String> {
    let mut s = String::from(
        "| target | implementation (from its greeting) | suite | address | MUST | SHOULD/MAY | ROBUSTNESS | expected failures |\n|---|---|---|---|---|---|---|---|\n",
    );
    for p in &args.reports {
        s.push_str(&row(p, args.expect_fail_dir.as_deref())?);
    }
    s.push_str(
        "\nEach level cell: pass / fail / non-strict / n/a. FAIL is a failed MUST or ROBUSTNESS \
         case, NON-STRICT a failed SHOULD or MAY case, N/A a case whose needs the target does not \
         meet (no STARTTLS, not a slave, ...); cases skipped with --skip are counted as not run.\n",
    );
    Ok(s)
}

/// `conformance report`: print the table; exit 2 on an unreadable report.
pub fn main(args: &ReportArgs) -> i32 {
    match render(args) {
        Ok(s) => {
            print!("{s}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("conformance report: {e}");
            EXIT_USAGE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products() {
        assert_eq!(
            product_of(r#"* OK MUPDATE "mup.test" "Cyrus IMAP" "3.6.1-Debian" "(master)""#),
            "Cyrus IMAP 3.6.1-Debian"
        );
        assert_eq!(
            product_of("* OK [CAPABILITY IMAP4rev1 LITERAL+] Dovecot (Debian) ready."),
            "Dovecot (Debian) ready."
        );
    }
}
