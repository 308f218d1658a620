//! The JUnit XML report (`--junit FILE`, via quick-junit): one test suite per protocol, one test
//! case per scenario. FAIL is a failure; NON-STRICT, N/A and NOT-RUN are skipped with a message;
//! a waived failure is skipped, a waived case that passed is a failure.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::human::failure_block;
use crate::run::suite::{CaseReport, Grade};

/// Render the JUnit report.
pub fn render(reports: &[CaseReport]) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("conformance");
    let mut suites: Vec<(String, TestSuite)> = Vec::new();
    for r in reports {
        let status = match (r.grade, &r.waived) {
            (Grade::Pass, None) => TestCaseStatus::success(),
            (Grade::Pass, Some(w)) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(format!("passed but listed in --expect-fail ({w})"));
                s
            }
            (Grade::Fail, None) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let msg = r
                    .failure
                    .as_ref()
                    .map(|f| f.message.clone())
                    .unwrap_or_default();
                s.set_message(format!("{} ({}): {msg}", r.rfc.join(", "), r.level));
                s.set_type(r.level.clone());
                s.set_description(failure_block(r));
                s
            }
            (g, waived) => {
                let mut s = TestCaseStatus::skipped();
                let why = match (g, waived) {
                    (_, Some(w)) => format!("{g}, expected to fail: {w}"),
                    (Grade::NonStrict, _) => format!(
                        "NON-STRICT ({}): {}",
                        r.level,
                        r.failure
                            .as_ref()
                            .map(|f| f.message.clone())
                            .unwrap_or_default()
                    ),
                    _ => format!("{g}: {}", r.reason.clone().unwrap_or_default()),
                };
                s.set_message(why);
                s
            }
        };
        let mut tc = TestCase::new(r.id.clone(), status);
        tc.set_classname(format!(
            "{}.{}",
            r.protocol,
            r.rfc.first().cloned().unwrap_or_default()
        ));
        tc.set_time(Duration::from_millis(r.elapsed_ms));
        let idx = match suites.iter().position(|(p, _)| *p == r.protocol) {
            Some(i) => i,
            None => {
                suites.push((r.protocol.clone(), TestSuite::new(r.protocol.clone())));
                suites.len() - 1
            }
        };
        if let Some((_, s)) = suites.get_mut(idx) {
            s.add_test_case(tc);
        }
    }
    report.add_test_suites(suites.into_iter().map(|(_, s)| s));
    report.to_string()
}
