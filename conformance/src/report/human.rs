//! The report for people: one explained block per failure, then a table by RFC section and
//! level, then the totals and the elapsed time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::run::suite::{CaseReport, Grade};
use crate::run::transcript::render;

/// The explanation of one failed case: requirement, step, expectation, mismatch, transcript.
pub fn failure_block(r: &CaseReport) -> String {
    let mut out = String::new();
    let waived = r
        .waived
        .as_ref()
        .map(|w| format!(" (expected to fail: {w})"))
        .unwrap_or_default();
    let _ = writeln!(out, "=== {} {}{waived}: {}", r.grade, r.id, r.title);
    let _ = writeln!(out, "    requirement: {} ({})", r.rfc.join(", "), r.level);
    if let Some(f) = &r.failure {
        let _ = writeln!(
            out,
            "    {} step, {}:{}: {}",
            f.phase, r.path, f.line, f.step
        );
        let _ = writeln!(out, "    problem:  {}", f.message);
        if let Some(e) = &f.expected {
            let _ = writeln!(out, "    expected: {}", e.replace('\n', "\n              "));
        }
        if let Some(g) = &f.got {
            let _ = writeln!(out, "    got:      {}", g.replace('\n', "\n              "));
        }
        if let Some(m) = &f.mismatch {
            let _ = writeln!(out, "    mismatch: {m}");
        }
    }
    if let Some(n) = &r.note {
        let _ = writeln!(out, "    note: {n}");
    }
    if !r.transcript.is_empty() {
        let _ = writeln!(out, "    transcript (C: sent, S: received):");
        for l in render(&r.transcript).lines() {
            let _ = writeln!(out, "      {l}");
        }
    }
    out
}

fn section(rfc: &[String]) -> String {
    rfc.first().cloned().unwrap_or_default()
}

/// Counts by grade.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// PASS.
    pub pass: usize,
    /// FAIL.
    pub fail: usize,
    /// NON-STRICT.
    pub non_strict: usize,
    /// N/A.
    pub na: usize,
    /// NOT-RUN.
    pub not_run: usize,
}

impl Counts {
    /// Add one case.
    pub fn add(&mut self, g: Grade) {
        match g {
            Grade::Pass => self.pass += 1,
            Grade::Fail => self.fail += 1,
            Grade::NonStrict => self.non_strict += 1,
            Grade::NotApplicable => self.na += 1,
            Grade::NotRun => self.not_run += 1,
        }
    }

    /// Counts of a list of reports.
    pub fn of(reports: &[CaseReport]) -> Counts {
        let mut c = Counts::default();
        for r in reports {
            c.add(r.grade);
        }
        c
    }
}

/// The summary table and totals.
pub fn summary(reports: &[CaseReport], elapsed: Duration) -> String {
    let mut by: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for r in reports {
        by.entry((section(&r.rfc), r.level.clone()))
            .or_default()
            .add(r.grade);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<11} {:>5} {:>5} {:>10} {:>5} {:>7}",
        "requirement", "level", "PASS", "FAIL", "NON-STRICT", "N/A", "NOT-RUN"
    );
    for ((sec, level), c) in &by {
        let _ = writeln!(
            out,
            "{sec:<22} {level:<11} {:>5} {:>5} {:>10} {:>5} {:>7}",
            c.pass, c.fail, c.non_strict, c.na, c.not_run
        );
    }
    let t = Counts::of(reports);
    let waived = reports
        .iter()
        .filter(|r| r.waived.is_some() && matches!(r.grade, Grade::Fail | Grade::NonStrict))
        .count();
    let unexpected = reports
        .iter()
        .filter(|r| r.waived.is_some() && r.grade == Grade::Pass)
        .map(|r| r.id.as_str())
        .collect::<Vec<_>>();
    let _ = writeln!(
        out,
        "{} cases: {} passed, {} failed, {} non-strict, {} n/a, {} not run{} in {:.2}s",
        reports.len(),
        t.pass,
        t.fail,
        t.non_strict,
        t.na,
        t.not_run,
        if waived > 0 {
            format!(" ({waived} expected failures)")
        } else {
            String::new()
        },
        elapsed.as_secs_f64()
    );
    if !unexpected.is_empty() {
        let _ = writeln!(
            out,
            "listed in --expect-fail but passed (remove them from the list): {}",
            unexpected.join(", ")
        );
    }
    out
}
