//! Reports of a run: the human summary ([`human`]), JSON ([`json`]), JUnit ([`junit`]), failure
//! bundles ([`bundle`]), the `--expect-fail` waivers and the exit code.

pub mod bundle;
pub mod compat;
pub mod human;
pub mod json;
pub mod junit;

use crate::run::suite::{CaseReport, Grade};

/// Exit code: every selected required case passed (waivers applied).
pub const EXIT_OK: i32 = 0;
/// Exit code: a required case failed, or a waived case passed.
pub const EXIT_FAIL: i32 = 1;
/// Exit code: target unreachable or bad arguments.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the selection matched no case, or no selected case applied to the target (every
/// one N/A or NOT-RUN): a gate that judged nothing must not pass (the h2spec lesson).
pub const EXIT_NO_CASE: i32 = 3;

/// One `--expect-fail` line: `ID-PATTERN  reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiver {
    /// Id or glob (`*`, `?`).
    pub pattern: String,
    /// Why it is expected to fail.
    pub reason: String,
}

/// Parse a waiver file. `#` starts a comment line.
pub fn parse_waivers(text: &str) -> Vec<Waiver> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (p, r) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            Waiver {
                pattern: p.to_string(),
                reason: r.trim().to_string(),
            }
        })
        .collect()
}

/// Glob match with `*` (any run) and `?` (one character).
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, t.get(i..).unwrap_or_default())),
            Some((c, rest)) => t
                .split_first()
                .is_some_and(|(tc, trest)| (*c == '?' || c == tc) && go(rest, trest)),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// Mark every case that a waiver lists.
pub fn apply_waivers(reports: &mut [CaseReport], waivers: &[Waiver]) {
    for r in reports.iter_mut() {
        if let Some(w) = waivers.iter().find(|w| glob(&w.pattern, &r.id)) {
            r.waived = Some(if w.reason.is_empty() {
                "listed in --expect-fail".into()
            } else {
                w.reason.clone()
            });
        }
    }
}

/// True when this case makes the run fail: an unwaived FAIL, or a waived case that passed.
pub fn counts_as_failure(r: &CaseReport) -> bool {
    matches!(
        (r.grade, &r.waived),
        (Grade::Fail, None) | (Grade::Pass, Some(_))
    )
}

/// True when the case was judged: it ran against the target and got a verdict.
pub fn was_judged(r: &CaseReport) -> bool {
    matches!(r.grade, Grade::Pass | Grade::Fail | Grade::NonStrict)
}

/// The exit code for a finished run: [`EXIT_FAIL`] on any failure, [`EXIT_NO_CASE`] when no
/// case was judged (all N/A or not run), else [`EXIT_OK`].
pub fn exit_code(reports: &[CaseReport]) -> i32 {
    if reports.iter().any(counts_as_failure) {
        EXIT_FAIL
    } else if !reports.iter().any(was_judged) {
        EXIT_NO_CASE
    } else {
        EXIT_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("mupdate/lex-*", "mupdate/lex-blank-line"));
        assert!(!glob("mupdate/lex-*", "mupdate/reserve-new"));
        assert!(glob("*", "x"));
        assert!(glob("a?c", "abc"));
        assert!(glob("mupdate/reserve-new", "mupdate/reserve-new"));
    }

    fn report(grade: Grade) -> CaseReport {
        CaseReport {
            id: "x".into(),
            title: String::new(),
            protocol: "mupdate".into(),
            rfc: Vec::new(),
            level: "MUST".into(),
            grade,
            reason: None,
            failure: None,
            warnings: Vec::new(),
            elapsed_ms: 0,
            note: None,
            waived: None,
            transcript: Vec::new(),
            transcript_text: None,
            path: String::new(),
            source: String::new(),
            index: 0,
            run_id: String::new(),
            target: String::new(),
        }
    }

    #[test]
    fn exit_codes() {
        use Grade::*;
        let run = |gs: &[Grade]| exit_code(&gs.iter().map(|g| report(*g)).collect::<Vec<_>>());
        assert_eq!(run(&[Pass, NotApplicable]), EXIT_OK);
        assert_eq!(run(&[NonStrict]), EXIT_OK);
        assert_eq!(run(&[Pass, Fail]), EXIT_FAIL);
        assert_eq!(run(&[NotApplicable, NotApplicable]), EXIT_NO_CASE);
        assert_eq!(run(&[NotApplicable, NotRun]), EXIT_NO_CASE);
        assert_eq!(run(&[]), EXIT_NO_CASE);
    }

    #[test]
    fn waiver_file() {
        let w = parse_waivers("# known\nmupdate/delete-missing   crashes the master\n\nimap/*\n");
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].reason, "crashes the master");
        assert_eq!(w[1].reason, "");
    }
}
