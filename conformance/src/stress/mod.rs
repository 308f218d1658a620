//! `conformance stress`: random concurrent workloads, recorded and checked against the model.
//!
//! MUPDATE ([`mupdate`]): N clients send random writes and FINDs generated from a seed on a small
//! pool of names, S UPDATE streams record every line. The history is checked for
//! linearizability against [`murder_model::MailboxDb::apply`] ([`linear`]), and the streams for
//! consistency with it and the NOOP barrier ([`streams`]). IMAP ([`imap`]): W writers
//! MULTIAPPEND while observers record EXISTS; atomicity, APPENDUID and the final count are
//! checked.
//!
//! Black-box like the rest of the runner: it speaks through [`crate::bench::client`] (the runner's
//! own connection and framer), never the reference server's codecs. Loopback targets only
//! ([`crate::bench::check_loopback`]). A failure prints a small failing sub-history, the seed and
//! the command line to run the same op sequences again (the interleaving may differ).

pub mod history;
pub mod imap;
pub mod linear;
pub mod mupdate;
pub mod streams;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::bench::client::Client;
use crate::bench::{BenchError, check_loopback, loopback_login, write_json};
use crate::cli::{Options, SuiteArg};
use crate::report::{EXIT_FAIL, EXIT_OK, EXIT_USAGE};
use history::Op;
use linear::Verdict;

/// Default run length when neither `--duration` nor `--ops` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Default MUPDATE clients.
pub const DEFAULT_CLIENTS: usize = 8;
/// Default IMAP writers.
pub const DEFAULT_WRITERS: usize = 3;

/// Arguments of `conformance stress` (`--target`, `--suite`, `--user`, `--password`, `--json`,
/// `--timeout`, `--run-id` are the runner's global options).
#[derive(Debug, Clone, Args)]
pub struct StressArgs {
    /// Concurrent clients (IMAP: writers) [default: 8 for mupdate, 3 for imap].
    #[arg(long)]
    pub clients: Option<usize>,
    /// Seconds the workload runs [default: 10 when --ops is not given].
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Operations at most (MUPDATE commands; IMAP: MULTIAPPEND batches, default 40).
    #[arg(long, value_name = "N")]
    pub ops: Option<u64>,
    /// Seed of the generated op sequences [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// MUPDATE: UPDATE streams recording every change.
    #[arg(long, default_value_t = 2)]
    pub streams: usize,
    /// MUPDATE: names in the pool the clients fight over.
    #[arg(long, default_value_t = 4)]
    pub names: usize,
    /// IMAP: observers polling EXISTS.
    #[arg(long, default_value_t = 2)]
    pub observers: usize,
    /// Linearizability search steps per name before the verdict is "inconclusive".
    #[arg(long, default_value_t = linear::DEFAULT_MAX_STEPS)]
    pub max_steps: u64,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Which workload.
    pub suite: SuiteArg,
    /// HOST:PORT (loopback).
    pub addr: String,
    /// User (MUPDATE: an admin).
    pub user: String,
    /// Password.
    pub password: String,
    /// Clients (IMAP: writers).
    pub clients: usize,
    /// UPDATE streams.
    pub streams: usize,
    /// Pool size.
    pub names: usize,
    /// IMAP observers.
    pub observers: usize,
    /// Run length.
    pub duration: Option<Duration>,
    /// Operation cap.
    pub ops: Option<u64>,
    /// Seed.
    pub seed: u64,
    /// Longest wait for one reply.
    pub timeout: Duration,
    /// Makes the run's names unique (6 hex digits).
    pub run_id: String,
    /// See [`StressArgs::max_steps`].
    pub max_steps: u64,
}

impl Spec {
    /// A spec with the defaults (10 s, default clients, 2 streams, 4 names, 2 observers).
    pub fn new(suite: SuiteArg, addr: &str, user: &str, password: &str, seed: u64) -> Spec {
        Spec {
            suite,
            addr: addr.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            clients: match suite {
                SuiteArg::Mupdate => DEFAULT_CLIENTS,
                SuiteArg::Imap => DEFAULT_WRITERS,
            },
            streams: 2,
            names: 4,
            observers: 2,
            duration: Some(DEFAULT_DURATION),
            ops: None,
            seed,
            timeout: Duration::from_secs(30),
            run_id: format!("{:06x}", rand::random::<u32>() & 0xff_ffff),
            max_steps: linear::DEFAULT_MAX_STEPS,
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Short class (`linearizability`, `stream-invented-state`, `multiappend-not-atomic`, ...).
    pub kind: String,
    /// One sentence.
    pub summary: String,
    /// The evidence: ops with client, times, bytes sent and received.
    pub detail: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct StressReport {
    /// `mupdate` or `imap`.
    pub suite: String,
    /// HOST:PORT.
    pub target: String,
    /// Seed.
    pub seed: u64,
    /// Run id (names).
    pub run_id: String,
    /// Clients (IMAP: writers).
    pub clients: usize,
    /// Operations recorded (MUPDATE commands, IMAP batches).
    pub ops: usize,
    /// Operations never answered.
    pub pending: usize,
    /// Workload seconds.
    pub workload_seconds: f64,
    /// Time spent checking, in ms.
    pub check_ms: f64,
    /// `ops / check time`.
    pub checked_ops_per_second: f64,
    /// Problems.
    pub violations: Vec<Violation>,
    /// What could not be decided (search budget, unanswered final reads).
    pub inconclusive: Vec<String>,
    /// Extra facts (stream lines, EXISTS seen).
    pub notes: Vec<String>,
    /// The command line that generates the same op sequences.
    pub replay: String,
}

impl StressReport {
    /// No violation.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Check a recorded MUPDATE run: BAD replies, per-name linearizability (shrunk counterexamples),
/// stream consistency. Returns violations and inconclusive notes.
pub fn check_mupdate(run: &mupdate::MupdateRun, max_steps: u64) -> (Vec<Violation>, Vec<String>) {
    let mut violations = Vec::new();
    let mut inconclusive = Vec::new();
    for op in &run.ops {
        if op.complete_us.is_some() && op.outcome.is_none() {
            violations.push(Violation {
                kind: "bad-reply".into(),
                summary: "a well-formed command was answered BAD or with a data line that does \
                          not parse (RFC 3656 3.5, 3.6)"
                    .into(),
                detail: op.describe(),
            });
        }
    }
    let mut by_name: BTreeMap<&[u8], Vec<&Op>> = BTreeMap::new();
    for op in &run.ops {
        if let Some(n) = op.command.name() {
            by_name.entry(n).or_default().push(op);
        }
    }
    for (name, ops) in &by_name {
        let shown = String::from_utf8_lossy(name);
        match linear::check_name(ops, None, max_steps) {
            Verdict::Linearizable => {}
            Verdict::Inconclusive => inconclusive.push(format!(
                "linearizability of {shown} ({} ops): search budget of {max_steps} steps spent \
                 (the search grows with the ops in flight on one name at once: use more \
                 --names, fewer --clients, or raise --max-steps)",
                ops.len()
            )),
            Verdict::NotLinearizable => {
                let owned: Vec<Op> = ops.iter().map(|o| (*o).clone()).collect();
                let small = linear::shrink(&owned);
                let mut detail = format!(
                    "  failing sub-history of {} ops (of {} on this name; no order consistent \
                     with real time explains these replies):\n",
                    small.ops.len(),
                    ops.len()
                );
                if small.skipped > 0 {
                    let starts: Vec<String> =
                        small.starts.iter().map(streams::show_state).collect();
                    let _ = writeln!(
                        detail,
                        "  starting from the state the {} earlier ops on it leave (none in \
                         flight then; any of: {})",
                        small.skipped,
                        starts.join(" | ")
                    );
                }
                if !small.relaxed.is_empty() {
                    let _ = writeln!(
                        detail,
                        "  (ops marked ~ would fail as well with no reply: the unmarked replies \
                         are the ones that conflict)"
                    );
                }
                for o in &small.ops {
                    let text = o.describe();
                    if small.relaxed.contains(&o.id) {
                        detail.push_str(&text.replacen("  #", "~ #", 1));
                    } else {
                        detail.push_str(&text);
                    }
                }
                violations.push(Violation {
                    kind: "linearizability".into(),
                    summary: format!(
                        "the replies on {shown} are not linearizable: no sequential order of \
                         these commands gives them (RFC 3656 4.1-4.9)"
                    ),
                    detail,
                });
            }
        }
    }
    let pending = run.ops.iter().filter(|o| o.complete_us.is_none()).count();
    let finals = if pending == 0 {
        run.final_states.as_ref()
    } else {
        inconclusive.push(format!(
            "{pending} ops never answered: the streams' final states are not compared"
        ));
        None
    };
    if run.final_states.is_none() {
        inconclusive.push("a final FIND was not answered OK: final states unknown".into());
    }
    violations.extend(streams::check_streams(&run.ops, &run.streams, finals));
    (violations, inconclusive)
}

fn replay_line(spec: &Spec, target: Option<&str>) -> String {
    let mut s = format!(
        "conformance stress --suite {} --clients {} --seed {}",
        match spec.suite {
            SuiteArg::Mupdate => "mupdate",
            SuiteArg::Imap => "imap",
        },
        spec.clients,
        spec.seed
    );
    if let Some(n) = spec.ops {
        let _ = write!(s, " --ops {n}");
    }
    if let Some(d) = spec.duration {
        let _ = write!(s, " --duration {}", d.as_secs_f64());
    }
    match spec.suite {
        SuiteArg::Mupdate => {
            let _ = write!(s, " --streams {} --names {}", spec.streams, spec.names);
        }
        SuiteArg::Imap => {
            let _ = write!(s, " --observers {}", spec.observers);
        }
    }
    if let Some(t) = target {
        let _ = write!(s, " --target {t} --user {} --password ...", spec.user);
    }
    s
}

/// Run one workload against `spec.addr` and check it. `target` is what the replay line names
/// (`None` for the embedded servers).
pub async fn run(spec: &Spec, target: Option<&str>) -> Result<StressReport, BenchError> {
    check_loopback(&spec.addr)?;
    let mut notes = Vec::new();
    let (ops, pending, workload, check_time, violations, inconclusive) = match spec.suite {
        SuiteArg::Mupdate => {
            let r = mupdate::run(spec).await?;
            let t0 = Instant::now();
            let (v, i) = check_mupdate(&r, spec.max_steps);
            let lines: usize = r.streams.iter().map(|s| s.lines.len()).sum();
            notes.push(format!(
                "{} streams showed {lines} lines about the pool",
                r.streams.len()
            ));
            let pending = r.ops.iter().filter(|o| o.complete_us.is_none()).count();
            (r.ops.len(), pending, r.elapsed, t0.elapsed(), v, i)
        }
        SuiteArg::Imap => {
            let r = imap::run(spec).await?;
            let t0 = Instant::now();
            let v = imap::check(&r);
            notes.push(format!(
                "{} observers saw {} EXISTS; final STATUS MESSAGES {:?}, base {}",
                spec.observers,
                r.observations.len(),
                r.final_messages,
                r.base
            ));
            let pending = r.batches.iter().filter(|b| b.status.is_none()).count();
            let mut inconclusive = Vec::new();
            if r.final_messages.is_none() {
                inconclusive.push("STATUS MESSAGES after the writers stopped: no answer".into());
            }
            (
                r.batches.len(),
                pending,
                r.elapsed,
                t0.elapsed(),
                v,
                inconclusive,
            )
        }
    };
    let check_s = check_time.as_secs_f64().max(1e-9);
    Ok(StressReport {
        suite: format!("{:?}", spec.suite).to_ascii_lowercase(),
        target: target.unwrap_or("embedded").to_string(),
        seed: spec.seed,
        run_id: spec.run_id.clone(),
        clients: spec.clients,
        ops,
        pending,
        workload_seconds: workload.as_secs_f64(),
        check_ms: check_s * 1000.0,
        checked_ops_per_second: ops as f64 / check_s,
        violations,
        inconclusive,
        notes,
        replay: replay_line(spec, target),
    })
}

/// The human report.
pub fn render(r: &StressReport) -> String {
    let mut s = format!(
        "stress {} against {}: seed {}, run {}, {} clients\n  {} ops ({} pending) in {:.2} s; \
         checked in {:.1} ms ({:.0} ops/s)\n",
        r.suite,
        r.target,
        r.seed,
        r.run_id,
        r.clients,
        r.ops,
        r.pending,
        r.workload_seconds,
        r.check_ms,
        r.checked_ops_per_second
    );
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    for i in &r.inconclusive {
        let _ = writeln!(s, "inconclusive: {i}");
    }
    for v in &r.violations {
        let _ = writeln!(s, "VIOLATION [{}] {}", v.kind, v.summary);
        s.push_str(&v.detail);
    }
    if !r.ok() {
        let _ = writeln!(
            s,
            "replay (same seed: same op sequence per client; the interleaving may differ):\n  {}",
            r.replay
        );
    }
    let _ = writeln!(
        s,
        "result: {}",
        if r.ok() {
            "ok".to_string()
        } else {
            format!("{} VIOLATIONS", r.violations.len())
        }
    );
    s
}

fn spec_from(
    o: &Options,
    a: &StressArgs,
    suite: SuiteArg,
    addr: &str,
    creds: (&str, &str),
) -> Spec {
    let seed = a.seed.unwrap_or_else(rand::random);
    let mut spec = Spec::new(suite, addr, creds.0, creds.1, seed);
    if let Some(c) = a.clients {
        spec.clients = c.max(1);
    }
    spec.duration = match (a.duration, a.ops) {
        (Some(d), _) => Some(Duration::from_secs_f64(d.max(0.001))),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_DURATION),
    };
    spec.ops = a.ops;
    spec.streams = a.streams;
    spec.names = a.names.max(1);
    spec.observers = a.observers;
    spec.max_steps = a.max_steps.max(1);
    spec.timeout = Duration::from_secs(o.timeout.max(10));
    if let Some(r) = &o.run_id {
        spec.run_id = r.to_ascii_lowercase();
    }
    spec
}

/// Which suite a target speaks, from its greeting (IMAP greetings advertise IMAP4rev1).
async fn detect(addr: &str, timeout: Duration) -> Result<SuiteArg, BenchError> {
    let c = Client::connect(addr, timeout).await?;
    Ok(if c.has_cap("IMAP4REV1") {
        SuiteArg::Imap
    } else {
        SuiteArg::Mupdate
    })
}

/// `conformance stress`: exit 0 when no violation, 1 on a violation, 2 for bad arguments or an
/// unreachable target.
pub async fn main(o: &Options, a: &StressArgs) -> i32 {
    let mut reports = Vec::new();
    let mut failed_to_run = false;
    if o.tls || o.starttls {
        eprintln!("conformance stress: plain TCP only (loopback targets); drop --tls/--starttls");
        return EXIT_USAGE;
    }
    match &o.target {
        Some(addr) => {
            let (user, password) = match loopback_login(o, addr) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("conformance stress: {e}");
                    return EXIT_USAGE;
                }
            };
            let suite = match o.suite {
                Some(s) => s,
                None => match detect(addr, Duration::from_secs(o.timeout)).await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("conformance stress: {e}");
                        return EXIT_USAGE;
                    }
                },
            };
            let spec = spec_from(o, a, suite, addr, (&user, &password));
            eprintln!("conformance stress: seed {} run {}", spec.seed, spec.run_id);
            match run(&spec, Some(addr)).await {
                Ok(r) => reports.push(r),
                Err(e) => {
                    eprintln!("conformance stress: {e}");
                    failed_to_run = true;
                }
            }
        }
        None => {
            let emb = match crate::embedded::start().await {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("conformance stress: {e}");
                    return EXIT_USAGE;
                }
            };
            let Some((user, password)) = emb.creds.user.clone() else {
                return EXIT_USAGE;
            };
            let suites = match o.suite {
                Some(s) => vec![s],
                None => vec![SuiteArg::Mupdate, SuiteArg::Imap],
            };
            for suite in suites {
                let addr = match suite {
                    SuiteArg::Mupdate => emb.mupdate.local_addr(),
                    SuiteArg::Imap => emb.imap.local_addr(),
                };
                let spec = spec_from(o, a, suite, &addr.to_string(), (&user, &password));
                eprintln!(
                    "conformance stress: embedded {suite:?} server on {addr}, seed {} run {}",
                    spec.seed, spec.run_id
                );
                match run(&spec, None).await {
                    Ok(r) => reports.push(r),
                    Err(e) => {
                        eprintln!("conformance stress: {e}");
                        failed_to_run = true;
                    }
                }
            }
            emb.shutdown().await;
        }
    }
    for r in &reports {
        print!("{}", render(r));
    }
    if let Some(path) = &o.json
        && let Err(e) = write_json(path, &serde_json::json!({ "stress": reports }))
    {
        eprintln!("conformance stress: --json {}: {e}", path.display());
        return EXIT_USAGE;
    }
    if reports.iter().any(|r| !r.ok()) {
        EXIT_FAIL
    } else if failed_to_run {
        EXIT_USAGE
    } else {
        EXIT_OK
    }
}
