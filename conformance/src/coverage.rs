//! Requirements coverage (`--coverage`): the requirement tables of `scenarios/requirements/*.md`
//! (embedded in the binary like the corpus), checked against the corpus, and printed with the
//! grades of a run when one happened in the same invocation.
//!
//! A table row is `| req | section | level | requirement | scenarios | untestable |`. A row is
//! *testable* when its `untestable` cell is empty; a testable row must list at least one scenario,
//! and every listed id must exist. Ids in the bullet lists that follow a table (sections such as
//! "Scenarios judged on text without an RFC 2119 keyword") may be globs (`mupdate/reserve-*`);
//! each must match at least one case.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::glob;
use crate::run::suite::{CaseReport, Grade};

/// The embedded requirement tables: (path under `scenarios/`, text).
pub static TABLES: &[(&str, &str)] = &[
    (
        "requirements/rfc3656.md",
        include_str!("../../scenarios/requirements/rfc3656.md"),
    ),
    (
        "requirements/rfc3502.md",
        include_str!("../../scenarios/requirements/rfc3502.md"),
    ),
];

/// The levels a row may carry (the RFC's keyword; in parentheses for a normative statement
/// without a keyword).
const LEVELS: &[&str] = &[
    "MUST",
    "MUST NOT",
    "REQUIRED",
    "SHALL",
    "SHALL NOT",
    "SHOULD",
    "SHOULD NOT",
    "RECOMMENDED",
    "NOT RECOMMENDED",
    "MAY",
    "OPTIONAL",
];

/// One requirement row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// `RFC3656-4.3-1`.
    pub req: String,
    /// RFC section (`4.3`, `uidplus`).
    pub section: String,
    /// Keyword as written (`MUST`, `(SHOULD)`).
    pub level: String,
    /// Short paraphrase.
    pub text: String,
    /// Scenario ids that check it.
    pub scenarios: Vec<String>,
    /// Why it cannot be checked black-box, if it cannot.
    pub untestable: Option<String>,
    /// Table file and 1-based line, for messages.
    pub at: String,
}

impl Requirement {
    /// True unless the row says why it cannot be tested.
    pub fn testable(&self) -> bool {
        self.untestable.is_none()
    }
}

/// An id mentioned outside the table (bullet lists), possibly a glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mention {
    /// Id or glob.
    pub pattern: String,
    /// Table file and line.
    pub at: String,
}

/// Everything read from the tables.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    /// Every row, in file order.
    pub requirements: Vec<Requirement>,
    /// Ids named in the prose sections.
    pub mentions: Vec<Mention>,
}

/// A rule a table breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A row without six cells, or with a bad id or level.
    #[error("{at}: malformed row: {why}")]
    Malformed {
        /// Where.
        at: String,
        /// What is wrong.
        why: String,
    },
    /// A testable requirement that lists no scenario.
    #[error("{at}: {req} is testable but lists no scenario")]
    Uncovered {
        /// Where.
        at: String,
        /// Requirement.
        req: String,
    },
    /// A listed scenario id that is not in the corpus.
    #[error("{at}: {req} lists {id}, which is not a scenario")]
    UnknownScenario {
        /// Where.
        at: String,
        /// Requirement (or `prose` for the bullet lists).
        req: String,
        /// The id.
        id: String,
    },
    /// Two rows with one id.
    #[error("{at}: duplicate requirement {req}")]
    Duplicate {
        /// Where.
        at: String,
        /// Requirement.
        req: String,
    },
}

fn is_scenario_token(t: &str) -> bool {
    (t.starts_with("mupdate/") || t.starts_with("imap/"))
        && t.len() > t.find('/').unwrap_or(0) + 1
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/*?.".contains(&b))
}

fn parse_row(at: &str, line: &str) -> Result<Requirement, Problem> {
    let bad = |why: String| Problem::Malformed {
        at: at.to_string(),
        why,
    };
    let inner = line
        .trim()
        .strip_prefix('|')
        .and_then(|l| l.strip_suffix('|'))
        .ok_or_else(|| bad("a row starts and ends with |".into()))?;
    let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
    let [req, section, level, text, scenarios, untestable] = cells.as_slice() else {
        return Err(bad(format!("{} cells, expected 6", cells.len())));
    };
    let valid_req = req.starts_with("RFC")
        && req.split('-').count() >= 3
        && req
            .rsplit('-')
            .next()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !valid_req {
        return Err(bad(format!(
            "requirement id {req:?} is not RFCnnnn-SECTION-N"
        )));
    }
    let expected_section = req.split('-').nth(1).unwrap_or_default();
    if *section != expected_section {
        return Err(bad(format!(
            "section {section:?} does not match the id {req}"
        )));
    }
    let bare = level.trim_start_matches('(').trim_end_matches(')');
    if !LEVELS.contains(&bare) {
        return Err(bad(format!("level {level:?} is not an RFC 2119 keyword")));
    }
    if text.is_empty() {
        return Err(bad("empty requirement text".into()));
    }
    let mut ids = Vec::new();
    for id in scenarios
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if !is_scenario_token(id) || id.contains(['*', '?']) {
            return Err(bad(format!("{id:?} is not a scenario id")));
        }
        ids.push(id.to_string());
    }
    Ok(Requirement {
        req: req.to_string(),
        section: section.to_string(),
        level: level.to_string(),
        text: text.to_string(),
        scenarios: ids,
        untestable: (!untestable.is_empty()).then(|| untestable.to_string()),
        at: at.to_string(),
    })
}

/// Parse one table file. Rows are the `|` lines after the `| req |` header; bullet lines (`* `)
/// after the table contribute [`Mention`]s.
pub fn parse(file: &str, text: &str) -> (Tables, Vec<Problem>) {
    let mut out = Tables::default();
    let mut problems = Vec::new();
    let mut in_table = false;
    let mut after_table = false;
    let mut in_bullet = false;
    for (n, line) in text.lines().enumerate() {
        let at = format!("{file}:{}", n + 1);
        let t = line.trim();
        if t.starts_with("| req |") {
            in_table = true;
            continue;
        }
        if in_table {
            if t.starts_with("|---") || t.starts_with("| ---") {
                continue;
            }
            if t.starts_with('|') {
                match parse_row(&at, t) {
                    Ok(r) => out.requirements.push(r),
                    Err(p) => problems.push(p),
                }
                continue;
            }
            in_table = false;
            after_table = true;
        }
        if after_table {
            if t.starts_with("* ") || t.starts_with("- ") {
                in_bullet = true;
            } else if t.is_empty() || t.starts_with('#') {
                in_bullet = false;
            }
            if in_bullet {
                for tok in t.split(|c: char| c.is_whitespace() || c == ',' || c == ':') {
                    let tok = tok.trim_end_matches(['.', ')', ';']);
                    if is_scenario_token(tok) {
                        out.mentions.push(Mention {
                            pattern: tok.to_string(),
                            at: at.clone(),
                        });
                    }
                }
            }
        }
    }
    (out, problems)
}

/// Parse every embedded table.
pub fn embedded() -> (Tables, Vec<Problem>) {
    let mut all = Tables::default();
    let mut problems = Vec::new();
    for (file, text) in TABLES {
        let (t, p) = parse(file, text);
        all.requirements.extend(t.requirements);
        all.mentions.extend(t.mentions);
        problems.extend(p);
    }
    (all, problems)
}

/// Check the tables against the corpus ids: coverage of testable rows, existence of ids,
/// unique requirement ids.
pub fn check(tables: &Tables, ids: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<&str, ()> = BTreeMap::new();
    for r in &tables.requirements {
        if seen.insert(&r.req, ()).is_some() {
            problems.push(Problem::Duplicate {
                at: r.at.clone(),
                req: r.req.clone(),
            });
        }
        if r.testable() && r.scenarios.is_empty() {
            problems.push(Problem::Uncovered {
                at: r.at.clone(),
                req: r.req.clone(),
            });
        }
        for id in &r.scenarios {
            if !ids.contains(id) {
                problems.push(Problem::UnknownScenario {
                    at: r.at.clone(),
                    req: r.req.clone(),
                    id: id.clone(),
                });
            }
        }
    }
    for m in &tables.mentions {
        let found = if m.pattern.contains(['*', '?']) {
            ids.iter().any(|i| glob(&m.pattern, i))
        } else {
            ids.contains(&m.pattern)
        };
        if !found {
            problems.push(Problem::UnknownScenario {
                at: m.at.clone(),
                req: "prose".into(),
                id: m.pattern.clone(),
            });
        }
    }
    problems
}

/// Totals of a coverage table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Every row.
    pub requirements: usize,
    /// Rows with an empty `untestable` cell.
    pub testable: usize,
    /// Testable rows listing at least one scenario.
    pub covered: usize,
    /// Rows that say why they cannot be tested.
    pub untestable: usize,
    /// With a run: testable rows whose every run scenario passed (or was N/A), at least one run.
    pub passing: usize,
    /// With a run: testable rows with a failed (FAIL or NON-STRICT) scenario.
    pub failing: usize,
}

/// Count the rows.
pub fn totals(reqs: &[Requirement], reports: Option<&[CaseReport]>) -> Totals {
    let mut t = Totals {
        requirements: reqs.len(),
        ..Totals::default()
    };
    for r in reqs {
        if !r.testable() {
            t.untestable += 1;
            continue;
        }
        t.testable += 1;
        if !r.scenarios.is_empty() {
            t.covered += 1;
        }
        if let Some(reports) = reports {
            let grades: Vec<Grade> = r
                .scenarios
                .iter()
                .filter_map(|id| reports.iter().find(|c| &c.id == id).map(|c| c.grade))
                .collect();
            if grades
                .iter()
                .any(|g| matches!(g, Grade::Fail | Grade::NonStrict))
            {
                t.failing += 1;
            } else if grades.contains(&Grade::Pass) {
                t.passing += 1;
            }
        }
    }
    t
}

fn grade_of(reports: Option<&[CaseReport]>, id: &str) -> Option<String> {
    let reports = reports?;
    Some(
        reports
            .iter()
            .find(|c| c.id == id)
            .map_or_else(|| "not selected".to_string(), |c| c.grade.to_string()),
    )
}

/// The coverage table as text: one block per requirement, its scenarios (with their grades when
/// `reports` is given), then the totals.
pub fn render(reqs: &[Requirement], reports: Option<&[CaseReport]>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "requirements coverage");
    for r in reqs {
        let _ = writeln!(s, "{:<20} {:<12} {}", r.req, r.level, r.text);
        if let Some(why) = &r.untestable {
            let _ = writeln!(s, "    untestable: {why}");
        }
        for id in &r.scenarios {
            match grade_of(reports, id) {
                Some(g) => {
                    let _ = writeln!(s, "    {id:<56} {g}");
                }
                None => {
                    let _ = writeln!(s, "    {id}");
                }
            }
        }
    }
    let t = totals(reqs, reports);
    let _ = write!(
        s,
        "coverage: {} requirements, {} testable, {} covered, {} untestable",
        t.requirements, t.testable, t.covered, t.untestable
    );
    if reports.is_some() {
        let _ = write!(
            s,
            "; this run: {} testable requirements pass, {} have a failing scenario",
            t.passing, t.failing
        );
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "| req | section | level | requirement | scenarios | untestable |\n|---|---|---|---|---|---|\n";

    #[test]
    fn rows_parse() {
        let text = format!(
            "{HEAD}| RFC1-2.1-1 | 2.1 | MUST | x | mupdate/a, mupdate/b | |\n| RFC1-2-1 | 2 | (SHOULD) | y | | client side |\n\n## More\n\n* thing: mupdate/c-*, imap/d.\n"
        );
        let (t, p) = parse("f.md", &text);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(t.requirements.len(), 2);
        assert_eq!(t.requirements[0].scenarios, vec!["mupdate/a", "mupdate/b"]);
        assert!(!t.requirements[1].testable());
        let pats: Vec<&str> = t.mentions.iter().map(|m| m.pattern.as_str()).collect();
        assert_eq!(pats, vec!["mupdate/c-*", "imap/d"]);
    }

    #[test]
    fn malformed_rows() {
        for row in [
            "| RFC1-2-1 | 2 | MUST | x | mupdate/a |",
            "| RFC1-2-x | 2 | MUST | x | mupdate/a | |",
            "| RFC1-2-1 | 3 | MUST | x | mupdate/a | |",
            "| RFC1-2-1 | 2 | OUGHT | x | mupdate/a | |",
            "| RFC1-2-1 | 2 | MUST | x | reserve-new | |",
        ] {
            let (_, p) = parse("f.md", &format!("{HEAD}{row}\n"));
            assert_eq!(p.len(), 1, "{row}");
        }
    }

    #[test]
    fn check_finds_each_rule() {
        let text = format!(
            "{HEAD}| RFC1-2-1 | 2 | MUST | x | | |\n| RFC1-2-2 | 2 | MUST | x | mupdate/nope | |\n| RFC1-2-2 | 2 | MAY | x | mupdate/a | |\n\n* mupdate/z-*\n"
        );
        let (t, p) = parse("f.md", &text);
        assert!(p.is_empty());
        let probs = check(&t, &["mupdate/a".to_string()]);
        assert!(matches!(probs[0], Problem::Uncovered { .. }));
        assert!(matches!(probs[1], Problem::UnknownScenario { .. }));
        assert!(matches!(probs[2], Problem::Duplicate { .. }));
        assert!(matches!(probs[3], Problem::UnknownScenario { .. }));
        assert_eq!(probs.len(), 4);
        let tot = totals(&t.requirements, None);
        assert_eq!((tot.testable, tot.covered, tot.untestable), (3, 2, 0));
    }
}
