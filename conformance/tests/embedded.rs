//! The corpus against the embedded reference servers (`cargo run -p conformance` without
//! `--target`), and the mutant check: each deliberate bug of the servers (`faults` feature) must
//! make at least one case fail, or the corpus has a blind spot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use conformance::cli::{Cli, main_with};
use conformance::corpus;
use conformance::embedded::{run_against, start_with};
use conformance::run::RunConfig;

fn scenarios() -> PathBuf {
    std::env::var("CONF_SCN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios"))
}

/// The two tests of this file each load both CPUs (the mutant check runs many servers at once);
/// run side by side, the corpus run's waits could time out on a 2-core machine. One at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn grades(json: &Path) -> Vec<(String, String)> {
    report::grades_of(&report::read_json(json))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_passes_against_the_reference_servers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let s = scenarios();
    let cli = Cli::parse_from([
        "conformance",
        "--scenarios",
        s.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--bundle-dir",
        dir.path().join("b").to_str().unwrap(),
    ]);
    let code = main_with(cli).await;
    let g = grades(&json);
    let failed: Vec<_> = g
        .iter()
        .filter(|(_, g)| g == "FAIL" || g == "NOT-RUN")
        .collect();
    assert!(
        failed.is_empty(),
        "required cases failing against the reference: {failed:?}"
    );
    assert_eq!(code, 0);
    assert!(g.iter().any(|(_, g)| g == "PASS"));
}

/// Corpus size from which every mutant must be killed (the project's target: 72 MUPDATE and 50
/// MULTIAPPEND cases). Below it only the example cases exist and the check is that the suite
/// kills some mutant at all.
const FULL_CORPUS: (usize, usize) = (72, 50);

/// Faults that are not violations of a MUST or SHOULD: a case may catch them, none has to.
/// `CoalesceStream`: RFC 3656 4.11 asks for the changes, and spec/mupdate.md (case 43) keeps
/// only the final state as strict; Cyrus collapses intermediate states too.
const PERMITTED_BY_RFC: &[&str] = &["mupdate:CoalesceStream"];

/// Faults only concurrency shows: `conformance stress` must find them (tests/stress.rs); the
/// corpus's race cases may catch them too (today `mupdate/reserve-race` does), but none has to.
/// `ReserveRace`: two RESERVEs of one free name inside a 100 ms window both get OK.
const CAUGHT_ONLY_BY_STRESS: &[&str] = &["mupdate:ReserveRace"];

/// One mutant: its name (`mupdate:Fault` / `imap:Fault`) and the fault sets of the two servers.
type Mutant = (
    String,
    murder_server::mupdate::Faults,
    murder_server::imap::Faults,
);

/// Every fault switch of both servers, one mutant each.
fn mutants() -> Vec<Mutant> {
    let mut mutants: Vec<Mutant> = Vec::new();
    for f in murder_server::mupdate::Fault::ALL {
        mutants.push((
            format!("mupdate:{f:?}"),
            murder_server::mupdate::Faults([f].into_iter().collect()),
            murder_server::imap::Faults::default(),
        ));
    }
    for f in murder_server::imap::Fault::ALL {
        mutants.push((
            format!("imap:{f:?}"),
            murder_server::mupdate::Faults::default(),
            murder_server::imap::Faults([f].into_iter().collect()),
        ));
    }
    mutants
}

/// Run `cases` against a fresh pair of servers with the mutant's faults; the ids that failed
/// (FAIL or NON-STRICT). A run that stops before any case (the runner's credential check timed
/// out on the loaded machine: no report) is tried again with a longer timeout.
async fn failing_cases(
    (mf, imf): (murder_server::mupdate::Faults, murder_server::imap::Faults),
    cases: Vec<Arc<conformance::scenario::Scenario>>,
    json: PathBuf,
    bundles: PathBuf,
    run_id: String,
    timeout: u64,
    jobs: usize,
) -> Vec<String> {
    for attempt in 1..=3u64 {
        let timeout = timeout * attempt;
        let emb = start_with(mf.clone(), imf.clone()).await.unwrap();
        let t = timeout.to_string();
        let cli = Cli::parse_from([
            "conformance",
            "--json",
            json.to_str().unwrap(),
            "--timeout",
            &t,
            "--bundle-dir",
            bundles.to_str().unwrap(),
        ]);
        let cfg = RunConfig {
            skip: Vec::new(),
            creds: Default::default(),
            timeout: Duration::from_secs(timeout),
            max_timeout: Some(Duration::from_secs(timeout)),
            jobs,
            run_id: run_id.clone(),
        };
        run_against(&cli.opts, cfg, cases.clone(), &emb).await;
        emb.shutdown().await;
        if json.exists() {
            return grades(&json)
                .into_iter()
                .filter(|(_, g)| g == "FAIL" || g == "NON-STRICT")
                .map(|(id, _)| id)
                .collect();
        }
    }
    panic!("{run_id}: the run never got past its start (no report written)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_fault_is_caught_by_some_case() {
    let _one = ONE_AT_A_TIME.lock().await;
    let files = corpus::from_dir(&scenarios()).unwrap();
    let all: Vec<Arc<_>> = corpus::parse_all(&files)
        .unwrap()
        .into_iter()
        .map(Arc::new)
        .collect();
    let count = |p: &str| files.iter().filter(|f| f.path.starts_with(p)).count();
    let full = count("mupdate/") >= FULL_CORPUS.0 && count("imap/") >= FULL_CORPUS.1;
    let dir = tempfile::tempdir().unwrap();
    let bundles = dir.path().join("b");
    // Phase 1: every mutant at once, each against its own pair of servers, the whole corpus of
    // its protocol: the time is spent waiting on the timeouts the faults provoke, not on the
    // CPU. Under that load a slow case (a hundred-message APPEND) can also time out: phase 1
    // only nominates cases.
    let mut set = tokio::task::JoinSet::new();
    for (i, (name, mf, imf)) in mutants().into_iter().enumerate() {
        let imap_fault = name.starts_with("imap:");
        let selected: Vec<_> = all
            .iter()
            .filter(|s| (s.meta.protocol == conformance::scenario::Protocol::Imap) == imap_fault)
            .cloned()
            .collect();
        let json = dir.path().join(format!("m{i}.json"));
        let bundles = bundles.clone();
        set.spawn(async move {
            let run_id = format!("{:06x}", 0xa0000 + i);
            let hits = failing_cases(
                (mf.clone(), imf.clone()),
                selected,
                json,
                bundles,
                run_id,
                2,
                16,
            )
            .await;
            (name, mf, imf, hits)
        });
    }
    let mut nominated = Vec::new();
    while let Some(r) = set.join_next().await {
        nominated.push(r.unwrap());
    }
    nominated.sort_by(|a, b| a.0.cmp(&b.0));
    // Phase 2: each mutant's nominated cases again, a few mutants at a time with a generous
    // timeout. A kill counts only when the case fails again: a case that failed on a timeout
    // of the loaded phase 1 and passes now was noise, not a detection. A mutant that phase 1
    // did not catch at all runs its whole corpus again at this lower load: a detection that
    // depends on the server reacting within a second (a hang-up, a clock) may miss under the
    // load of phase 1.
    let gate = Arc::new(tokio::sync::Semaphore::new(4));
    let mut set = tokio::task::JoinSet::new();
    for (i, (name, mf, imf, hits)) in nominated.into_iter().enumerate() {
        let imap_fault = name.starts_with("imap:");
        let cases: Vec<_> = all
            .iter()
            .filter(|s| {
                if hits.is_empty() {
                    (s.meta.protocol == conformance::scenario::Protocol::Imap) == imap_fault
                } else {
                    hits.contains(&s.meta.id)
                }
            })
            .cloned()
            .collect();
        let json = dir.path().join(format!("c{i}.json"));
        let bundles = bundles.clone();
        let gate = gate.clone();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let run_id = format!("{:06x}", 0xb0000 + i);
            let confirmed = failing_cases((mf, imf), cases, json, bundles, run_id, 10, 8).await;
            (name, hits, confirmed)
        });
    }
    let mut killed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut noise: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut survivors = Vec::new();
    while let Some(r) = set.join_next().await {
        let (name, hits, confirmed) = r.unwrap();
        let unconfirmed: Vec<String> = hits
            .into_iter()
            .filter(|h| !confirmed.contains(h))
            .collect();
        if !unconfirmed.is_empty() {
            noise.insert(name.clone(), unconfirmed);
        }
        if confirmed.is_empty() {
            survivors.push(name);
        } else {
            killed.insert(name, confirmed);
        }
    }
    survivors.sort();
    eprintln!(
        "killed mutants: {killed:#?}\nunconfirmed phase-1 failures (load): {noise:#?}\nsurvivors: {survivors:?}"
    );
    assert!(!killed.is_empty(), "no server fault made any case fail");
    if full {
        let blind: Vec<&String> = survivors
            .iter()
            .filter(|s| !PERMITTED_BY_RFC.contains(&s.as_str()))
            .filter(|s| !CAUGHT_ONLY_BY_STRESS.contains(&s.as_str()))
            .filter(|s| !CAUGHT_ONLY_BY_STRESS.contains(&s.as_str()))
            .collect();
        assert!(blind.is_empty(), "faults no case detects: {blind:?}");
    }
}
