//! The JSON report (`--json FILE`): run data and one object per case.

use serde::Serialize;

use super::human::Counts;
use crate::run::suite::CaseReport;
use crate::run::{TargetInfo, TlsMode};

/// One target of the run and what its probe found.
#[derive(Clone, Debug, Serialize)]
pub struct JsonTarget {
    /// `host:port`.
    pub addr: String,
    /// TLS use.
    pub tls: TlsMode,
    /// Protocol, role, capabilities, mechanisms, STARTTLS.
    pub info: TargetInfo,
}

/// The whole JSON document.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// Run id.
    pub run_id: &'a str,
    /// Wall time of the run in milliseconds.
    pub elapsed_ms: u64,
    /// The exit code the run ends with.
    pub exit_code: i32,
    /// The targets tested.
    pub targets: &'a [JsonTarget],
    /// Totals.
    pub totals: JsonTotals,
    /// Every case.
    pub cases: &'a [CaseReport],
}

/// Totals by grade.
#[derive(Debug, Serialize)]
pub struct JsonTotals {
    /// PASS.
    pub pass: usize,
    /// FAIL.
    pub fail: usize,
    /// NON-STRICT.
    pub non_strict: usize,
    /// N/A.
    pub not_applicable: usize,
    /// NOT-RUN.
    pub not_run: usize,
}

/// Render the JSON report.
pub fn render(
    run_id: &str,
    elapsed_ms: u64,
    targets: &[JsonTarget],
    reports: &[CaseReport],
) -> Result<String, serde_json::Error> {
    let c = Counts::of(reports);
    serde_json::to_string_pretty(&JsonReport {
        run_id,
        elapsed_ms,
        exit_code: super::exit_code(reports),
        targets,
        totals: JsonTotals {
            pass: c.pass,
            fail: c.fail,
            non_strict: c.non_strict,
            not_applicable: c.na,
            not_run: c.not_run,
        },
        cases: reports,
    })
}
