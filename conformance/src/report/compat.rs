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
    id: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    reason: Option<String>,
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

/// One table row: a target (address, protocol, greeting) and its cases, merged over every
/// report that tested it.
struct Row {
    stem: String,
    addr: String,
    protocol: String,
    greeting: String,
    cases: BTreeMap<String, DocCase>,
}

fn skipped(c: &DocCase) -> bool {
    c.grade == "NOT-RUN"
        && c.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("skipped by the user"))
}

/// Read the reports; reports of one target (same address, protocol and greeting) merge into one
/// row, where a case that ran in one report replaces its `--skip`ped NOT-RUN in another.
fn rows(paths: &[PathBuf]) -> Result<Vec<Row>, String> {
    let mut rows: Vec<Row> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Doc =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut cases = doc.cases;
        for t in &doc.targets {
            let idx = match rows.iter().position(|r| {
                r.addr == t.addr && r.protocol == t.info.protocol && r.greeting == t.info.greeting
            }) {
                Some(i) => i,
                None => {
                    rows.push(Row {
                        stem: stem.clone(),
                        addr: t.addr.clone(),
                        protocol: t.info.protocol.clone(),
                        greeting: t.info.greeting.clone(),
                        cases: BTreeMap::new(),
                    });
                    rows.len() - 1
                }
            };
            let Some(row) = rows.get_mut(idx) else {
                continue;
            };
            let (mine, rest): (Vec<DocCase>, Vec<DocCase>) = cases.into_iter().partition(|c| {
                c.protocol == t.info.protocol && (c.target.is_empty() || c.target == t.addr)
            });
            cases = rest;
            for c in mine {
                let replace = row
                    .cases
                    .get(&c.id)
                    .is_none_or(|old| skipped(old) || !skipped(&c));
                if replace {
                    row.cases.insert(c.id.clone(), c);
                }
            }
        }
    }
    Ok(rows)
}

fn render_row(row: &Row, dir: Option<&std::path::Path>) -> String {
    let mut by: BTreeMap<&str, Tally> = BTreeMap::new();
    for c in row.cases.values() {
        let e = by.entry(level_column(&c.level)).or_default();
        match c.grade.as_str() {
            "PASS" => e.pass += 1,
            "FAIL" => e.fail += 1,
            "NON-STRICT" => e.non_strict += 1,
            "N/A" => e.na += 1,
            _ => e.not_run += 1,
        }
    }
    let waived = row.cases.values().filter(|c| c.waived.is_some()).count();
    let cell = |l: &str| by.get(l).map(Tally::cell).unwrap_or_else(|| "-".into());
    let link = match dir {
        Some(d) if d.join(format!("{}.txt", row.stem)).exists() => {
            let p = d.join(format!("{}.txt", row.stem));
            format!("[{waived} listed]({})", p.display())
        }
        _ => "none".to_string(),
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {link} |\n",
        row.stem,
        product_of(&row.greeting).replace('|', "\\|"),
        row.protocol,
        row.addr,
        cell("MUST"),
        cell("SHOULD"),
        cell("ROBUSTNESS"),
    )
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
    for r in rows(&args.reports)? {
        s.push_str(&render_row(&r, args.expect_fail_dir.as_deref()));
    }
    s.push_str(
        "\nEach level cell: pass / fail / non-strict / n/a. FAIL is a failed MUST or ROBUSTNESS \
         case, NON-STRICT a failed SHOULD or MAY case, N/A a case whose needs the target does not \
         meet (no STARTTLS, not a slave, ...). Reports of one target (same address and greeting) are \
         merged: a case run alone replaces its --skip entry in the main run.\n",
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
