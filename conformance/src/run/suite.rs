//! Runs the selected cases of one suite against one target: in parallel (`--jobs`), each graded
//! PASS / FAIL / NON-STRICT / N/A / NOT-RUN. After a failure the target is checked; if it no
//! longer accepts connections, every case not yet finished is NOT-RUN, never FAIL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::exec::{Failure, execute};
use super::probe::alive;
use super::transcript::Event;
use super::{RunConfig, Target, TargetInfo, unmet_need};
use crate::scenario::{Level, Protocol, Scenario};

/// The grade of one case (README section 8).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Grade {
    /// Every expectation matched.
    #[serde(rename = "PASS")]
    Pass,
    /// A MUST or ROBUSTNESS case failed.
    #[serde(rename = "FAIL")]
    Fail,
    /// A SHOULD or MAY case failed.
    #[serde(rename = "NON-STRICT")]
    NonStrict,
    /// The target lacks something the case needs.
    #[serde(rename = "N/A")]
    NotApplicable,
    /// Not run: the target stopped accepting connections.
    #[serde(rename = "NOT-RUN")]
    NotRun,
}

impl std::fmt::Display for Grade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Grade::Pass => "PASS",
            Grade::Fail => "FAIL",
            Grade::NonStrict => "NON-STRICT",
            Grade::NotApplicable => "N/A",
            Grade::NotRun => "NOT-RUN",
        })
    }
}

/// Everything reported about one case.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CaseReport {
    /// Case id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Suite.
    pub protocol: String,
    /// RFC references, primary first.
    pub rfc: Vec<String>,
    /// Level.
    pub level: String,
    /// Grade.
    pub grade: Grade,
    /// Why N/A or NOT-RUN.
    pub reason: Option<String>,
    /// The first failure.
    pub failure: Option<Failure>,
    /// Cleanup warnings.
    pub warnings: Vec<String>,
    /// Wall time.
    pub elapsed_ms: u64,
    /// The case's `note:`.
    pub note: Option<String>,
    /// Set by `--expect-fail`: the waiver's reason.
    pub waived: Option<String>,
    /// Everything said (kept for bundles; not serialised into the JSON report).
    #[serde(skip)]
    pub transcript: Vec<Event>,
    /// The transcript as text, for failed cases only.
    pub transcript_text: Option<String>,
    /// Scenario file path.
    pub path: String,
    /// Scenario text (for bundles).
    #[serde(skip)]
    pub source: String,
    /// Index of the case in the run (its names depend on it).
    pub index: usize,
    /// Run id.
    pub run_id: String,
    /// Target address.
    pub target: String,
}

/// One selected case.
#[derive(Clone, Debug)]
pub struct Selected {
    /// Index in the run.
    pub index: usize,
    /// The case.
    pub scenario: Arc<Scenario>,
}

fn base_report(sel: &Selected, target: &Target, run_id: &str) -> CaseReport {
    let m = &sel.scenario.meta;
    CaseReport {
        id: m.id.clone(),
        title: m.title.clone(),
        protocol: m.protocol.to_string(),
        rfc: m.rfc.clone(),
        level: m.level.to_string(),
        grade: Grade::NotRun,
        reason: None,
        failure: None,
        warnings: Vec::new(),
        elapsed_ms: 0,
        note: m.note.clone(),
        waived: None,
        transcript: Vec::new(),
        transcript_text: None,
        path: sel.scenario.path.clone(),
        source: sel.scenario.source.clone(),
        index: sel.index,
        run_id: run_id.to_string(),
        target: target.addr.clone(),
    }
}

/// Grade for a failed case of `level`.
pub fn failed_grade(level: Level) -> Grade {
    if level.is_required() {
        Grade::Fail
    } else {
        Grade::NonStrict
    }
}

/// Run one case (already selected) with the N/A and NOT-RUN rules.
async fn run_one(
    sel: Selected,
    target: Arc<Target>,
    info: Arc<TargetInfo>,
    cfg: Arc<RunConfig>,
    dead: Arc<AtomicBool>,
) -> CaseReport {
    let mut rep = base_report(&sel, &target, &cfg.run_id);
    let sc = &sel.scenario;
    if let Some(why) = unmet_need(&sc.effective_needs(), &info, &target, &cfg.creds) {
        rep.grade = Grade::NotApplicable;
        rep.reason = Some(why);
        return rep;
    }
    if let Some(p) = cfg
        .skip
        .iter()
        .find(|p| crate::report::glob(p, &sc.meta.id))
    {
        rep.reason = Some(format!("skipped by the user (--skip {p})"));
        return rep;
    }
    if dead.load(Ordering::SeqCst) {
        rep.reason = Some("the target stopped accepting connections earlier in the run".into());
        return rep;
    }
    let started = Instant::now();
    let ex = execute(sc, sel.index, &target, &info, &cfg).await;
    rep.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    rep.transcript = ex.transcript.events;
    rep.warnings = ex.warnings;
    match ex.failure {
        None => rep.grade = Grade::Pass,
        Some(f) => {
            rep.failure = Some(f);
            rep.grade = failed_grade(sc.meta.level);
            rep.transcript_text = Some(super::transcript::render(&rep.transcript));
            let budget = cfg.timeout.max(Duration::from_secs(2));
            if !alive(&target, sc.meta.protocol, budget).await {
                // The first case to find the target dead keeps its FAIL (it may have killed
                // it); the others were collateral.
                if dead.swap(true, Ordering::SeqCst) {
                    rep.grade = Grade::NotRun;
                    rep.reason =
                        Some("the target stopped accepting connections during this case".into());
                } else if let Some(f) = rep.failure.as_mut() {
                    f.message
                        .push_str(" (afterwards the target no longer accepts connections)");
                }
            }
        }
    }
    rep
}

/// Run the cases of one suite. Reports come back in case order.
pub async fn run_suite(
    cases: Vec<Selected>,
    target: Arc<Target>,
    info: Arc<TargetInfo>,
    cfg: Arc<RunConfig>,
    progress: ProgressBar,
) -> Vec<CaseReport> {
    let dead = Arc::new(AtomicBool::new(false));
    let sem = Arc::new(Semaphore::new(cfg.jobs.max(1)));
    let mut set = JoinSet::new();
    let n = cases.len();
    let selected = cases.clone();
    for (pos, sel) in cases.into_iter().enumerate() {
        let (target, info, cfg, dead, progress) = (
            target.clone(),
            info.clone(),
            cfg.clone(),
            dead.clone(),
            progress.clone(),
        );
        // Take the permit before spawning, so cases start in file order: with `--jobs 1` the run
        // is a deterministic sequence (what a crash-prone target needs to be judged the same
        // way every time).
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        set.spawn(async move {
            let _permit = permit;
            progress.set_message(sel.scenario.meta.id.clone());
            let rep = run_one(sel, target, info, cfg, dead).await;
            progress.inc(1);
            (pos, rep)
        });
    }
    let mut out: Vec<Option<CaseReport>> = vec![None; n];
    while let Some(done) = set.join_next().await {
        if let Ok((pos, rep)) = done
            && let Some(slot) = out.get_mut(pos)
        {
            *slot = Some(rep);
        }
    }
    let mut out: Vec<CaseReport> = out.into_iter().flatten().collect();
    // A case that lost its connection in the parallel run may have been hit by another case that
    // crashed the server: run it again alone before grading it.
    if cfg.jobs > 1 {
        for (rep, sel) in out.iter_mut().zip(&selected) {
            let lost = rep.failure.as_ref().is_some_and(|f| f.connection_lost);
            if !lost
                || !matches!(rep.grade, Grade::Fail | Grade::NonStrict)
                || dead.load(Ordering::SeqCst)
            {
                continue;
            }
            // Let a supervised server come back from a crash before the retry.
            let budget = cfg.timeout.max(Duration::from_secs(2));
            if !alive(&target, sel.scenario.meta.protocol, budget).await {
                break;
            }
            let first = rep
                .failure
                .as_ref()
                .map(|f| f.message.clone())
                .unwrap_or_default();
            let mut again = run_one(
                sel.clone(),
                target.clone(),
                info.clone(),
                cfg.clone(),
                dead.clone(),
            )
            .await;
            again.warnings.push(format!(
                "retried alone after losing its connection in the parallel run (first attempt: {first})"
            ));
            *rep = again;
        }
    }
    out
}

/// Whether the suite of `protocol` is among the cases.
pub fn has_protocol(cases: &[Selected], protocol: Protocol) -> bool {
    cases.iter().any(|c| c.scenario.meta.protocol == protocol)
}
