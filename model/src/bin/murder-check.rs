//! `murder-check`: run the stateright models of the Murder and of MULTIAPPEND from the command
//! line, with progress, counterexamples as transcripts and `.scn` scenarios, and the web explorer.
//!
//! ```text
//! cargo run -p murder-model --release -- check --backends 3 --slaves 2 --dfs --crashes 1
//! cargo run -p murder-model --release -- check --bug coalesce-stream --shrink --scenario-dir /tmp/scn
//! cargo run -p murder-model --release -- append --sessions 3 --batches 2 --crashes 2
//! cargo run -p murder-model --release -- explore --addr 127.0.0.1:3000
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use murder_model::murder::multiappend_model::{AppendBugs, AppendConfig, AppendModel};
use murder_model::murder::transcript::{render, shortest_discovery};
use murder_model::murder::{Bugs, MurderConfig, scenario};
use stateright::{Checker, Expectation, Model};

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "murder-check",
    about = "Model-check the Murder (RFC 3656) and MULTIAPPEND (RFC 3502)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// How to search.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Search {
    /// Breadth first (counterexamples can be shrunk with --shrink).
    Bfs,
    /// Depth first (less memory).
    Dfs,
}

/// A broken Murder variant.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum MurderBug {
    /// The master grants RESERVE over an existing name.
    ReserveOverExisting,
    /// The master coalesces the stream per name.
    CoalesceStream,
    /// The master answers NOOP before flushing.
    NoopBeforeFlush,
    /// The master answers OK before its commit is durable.
    OkBeforeCommit,
    /// The slave merges the dump instead of replacing its database.
    MergeResync,
    /// The slave ignores a master restart.
    IgnoreReset,
    /// The backend deletes locally before DELETE.
    LocalDeleteFirst,
    /// Repair ACTIVATEs every held mailbox blindly.
    BlindReactivate,
    /// Cyrus HEAD's create order (local create, RESERVE, ACTIVATE; roll back without DELETE).
    CyrusCreateOrder,
}

/// A broken MULTIAPPEND server.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum AppendBug {
    /// Append message by message.
    PerMessage,
    /// UIDNEXT derived on restart.
    UidnextNotPersisted,
    /// APPENDUID from sequence numbers.
    AppenduidFromSeqnums,
}

/// Size and faults of a Murder run.
#[derive(clap::Args, Debug)]
struct MurderArgs {
    /// Backends (plans cycle: create+delete `a`, create `a`, create `b`).
    #[arg(long, default_value_t = 2)]
    backends: usize,
    /// Slaves.
    #[arg(long, default_value_t = 1)]
    slaves: usize,
    /// Total crashes (each followed by a restart).
    #[arg(long, default_value_t = 0)]
    crashes: u8,
    /// Roles that may crash (default: all, when --crashes > 0).
    #[arg(long, value_delimiter = ',')]
    crash: Vec<Role>,
    /// Link losses per slave.
    #[arg(long, default_value_t = 0)]
    link_drops: u8,
    /// NOOPs per slave.
    #[arg(long, default_value_t = 1)]
    noops: u8,
    /// Turn off the backends' start-up reconciliation.
    #[arg(long)]
    no_repair: bool,
    /// Broken variants to turn on.
    #[arg(long, value_enum)]
    bug: Vec<MurderBug>,
}

/// Actor roles.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Role {
    /// The master.
    Master,
    /// Slaves.
    Slaves,
    /// Backends.
    Backends,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Check the Murder model exhaustively.
    Check {
        #[command(flatten)]
        m: MurderArgs,
        /// Search order.
        #[arg(long, value_enum, default_value = "dfs")]
        search: Search,
        /// Shorthand for --search bfs.
        #[arg(long)]
        bfs: bool,
        /// Shorthand for --search dfs.
        #[arg(long)]
        dfs: bool,
        /// Checker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Reduce by slave symmetry (DFS only; stateright's BFS ignores symmetry).
        #[arg(long)]
        symmetry: bool,
        /// Give up after this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        timeout: u64,
        /// Re-check with bounded BFS depth to print the shortest counterexamples.
        #[arg(long)]
        shrink: bool,
        /// Write each counterexample as a `.scn` conformance scenario into this directory.
        #[arg(long)]
        scenario_dir: Option<PathBuf>,
    },
    /// Check the MULTIAPPEND model exhaustively.
    Append {
        /// Appending sessions.
        #[arg(long, default_value_t = 2)]
        sessions: u8,
        /// Batches per session.
        #[arg(long, default_value_t = 2)]
        batches: u8,
        /// Messages per batch.
        #[arg(long, default_value_t = 2)]
        batch_size: u8,
        /// Server crashes.
        #[arg(long, default_value_t = 1)]
        crashes: u8,
        /// Broken variants.
        #[arg(long, value_enum)]
        bug: Vec<AppendBug>,
    },
    /// Serve stateright's web explorer for the Murder model.
    Explore {
        #[command(flatten)]
        m: MurderArgs,
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: String,
    },
}

fn murder_config(a: &MurderArgs) -> MurderConfig {
    let roles = |r: Role| a.crashes > 0 && (a.crash.is_empty() || a.crash.contains(&r));
    let mut bugs = Bugs::default();
    for b in &a.bug {
        match b {
            MurderBug::ReserveOverExisting => bugs.reserve_over_existing = true,
            MurderBug::CoalesceStream => bugs.coalesce_stream = true,
            MurderBug::NoopBeforeFlush => bugs.noop_before_flush = true,
            MurderBug::OkBeforeCommit => bugs.ok_before_commit = true,
            MurderBug::MergeResync => bugs.merge_resync = true,
            MurderBug::IgnoreReset => bugs.ignore_reset = true,
            MurderBug::LocalDeleteFirst => bugs.local_delete_first = true,
            MurderBug::BlindReactivate => bugs.blind_reactivate = true,
            MurderBug::CyrusCreateOrder => bugs.cyrus_create_order = true,
        }
    }
    MurderConfig {
        crashes: a.crashes,
        crash_master: roles(Role::Master),
        crash_slaves: roles(Role::Slaves),
        crash_backends: roles(Role::Backends),
        link_drops: a.link_drops,
        noops: a.noops,
        repair: !a.no_repair,
        bugs,
        ..MurderConfig::sized(a.backends, a.slaves)
    }
}

/// Wait for a checker, printing progress to stderr every second; false when it timed out.
fn wait<M: Model, C: Checker<M> + ?Sized>(c: &C, start: Instant, timeout: u64) -> bool {
    let mut last = Instant::now();
    while !c.is_done() {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "  {:>7.1}s  states={}  unique={}  depth={}  ({:.0} unique/s)",
                secs,
                c.state_count(),
                c.unique_state_count(),
                c.max_depth(),
                c.unique_state_count() as f64 / secs
            );
        }
        if timeout > 0 && start.elapsed() > Duration::from_secs(timeout) {
            eprintln!("timeout after {timeout}s: results are partial");
            return false;
        }
    }
    true
}

/// Print the verdict of every property; return how many failed. A partial (timed out) run
/// proves nothing by absence: "no counterexample yet", "not reached yet".
fn verdicts<M: Model>(model: &M, discovered: &[&str], complete: bool) -> usize {
    let mut failed = 0;
    for p in model.properties() {
        let found = discovered.contains(&p.name);
        let (ok, word) = match (&p.expectation, found, complete) {
            (Expectation::Sometimes, true, _) => (true, "reached"),
            (Expectation::Sometimes, false, true) => (false, "NEVER REACHED"),
            (Expectation::Sometimes, false, false) => (true, "not reached yet"),
            (_, false, true) => (true, "holds"),
            (_, false, false) => (true, "none yet"),
            (_, true, _) => (false, "COUNTEREXAMPLE"),
        };
        if !ok {
            failed += 1;
        }
        println!("  {:<14} {:?} {:?}", word, p.expectation, p.name);
    }
    failed
}

fn check(
    m: &MurderArgs,
    search: Search,
    threads: usize,
    symmetry: bool,
    timeout: u64,
    shrink: bool,
    scenario_dir: Option<PathBuf>,
) -> Result<usize> {
    let cfg = murder_config(m);
    println!(
        "murder model: {} backends, {} slaves, {} crashes, repair={}, bugs={:?}, {:?}, symmetry={symmetry}",
        cfg.backends(),
        cfg.slaves,
        cfg.crashes,
        cfg.repair,
        cfg.bugs,
        search
    );
    let start = Instant::now();
    let mut builder = cfg.clone().into_model().checker().threads(threads.max(1));
    if symmetry {
        if search == Search::Bfs {
            bail!("--symmetry needs --dfs (stateright's BFS ignores symmetry)");
        }
        builder = builder.symmetry_fn(murder_model::murder::symmetry::slave_symmetry);
    }
    let c: Box<dyn Checker<_>> = match search {
        Search::Bfs => Box::new(builder.spawn_bfs()),
        Search::Dfs => Box::new(builder.spawn_dfs()),
    };
    let complete = wait(&*c, start, timeout);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "states={} unique={} max_depth={} time={secs:.2}s ({:.0} unique states/s)",
        c.state_count(),
        c.unique_state_count(),
        c.max_depth(),
        c.unique_state_count() as f64 / secs.max(1e-9)
    );
    let model = cfg.clone().into_model();
    let discovered: Vec<&str> = c.discoveries().into_keys().collect();
    let failed = verdicts(&model, &discovered, complete);
    for p in model.properties() {
        if p.expectation == Expectation::Sometimes {
            continue;
        }
        let Some(path) = c.discovery(p.name) else {
            continue;
        };
        let path = if shrink {
            shortest_discovery(&cfg, p.name).unwrap_or(path)
        } else {
            path
        };
        println!();
        println!("{}", render(&model, p.name, &path));
        if let Some(dir) = &scenario_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let slug: String = p
                .name
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() {
                        ch.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            let id = format!("model-{}", slug.trim_matches('-'));
            let file = dir.join(format!("{id}.scn"));
            std::fs::write(&file, scenario::to_scenario(&model, p.name, &id, &path))
                .with_context(|| format!("writing {}", file.display()))?;
            println!("scenario written to {}", file.display());
        }
    }
    Ok(failed)
}

fn append(sessions: u8, batches: u8, batch_size: u8, crashes: u8, bug: &[AppendBug]) -> usize {
    let mut bugs = AppendBugs::default();
    for b in bug {
        match b {
            AppendBug::PerMessage => bugs.per_message = true,
            AppendBug::UidnextNotPersisted => bugs.uidnext_not_persisted = true,
            AppendBug::AppenduidFromSeqnums => bugs.appenduid_from_seqnums = true,
        }
    }
    let cfg = AppendConfig {
        sessions,
        batches,
        batch_size,
        crashes,
        expunge: true,
        bugs,
    };
    println!("multiappend model: {cfg:?}");
    let start = Instant::now();
    let c = AppendModel { cfg }.checker().spawn_dfs();
    let complete = wait(&c, start, 0);
    println!(
        "states={} unique={} max_depth={} time={:.2}s",
        c.state_count(),
        c.unique_state_count(),
        c.max_depth(),
        start.elapsed().as_secs_f64()
    );
    let discovered: Vec<&str> = c.discoveries().into_keys().collect();
    let failed = verdicts(c.model(), &discovered, complete);
    for p in c.model().properties() {
        if p.expectation != Expectation::Sometimes
            && let Some(path) = c.discovery(p.name)
        {
            println!("\ncounterexample to {:?}:\n{path}", p.name);
        }
    }
    failed
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let failed = match cli.cmd {
        Cmd::Check {
            m,
            search,
            bfs,
            dfs,
            threads,
            symmetry,
            timeout,
            shrink,
            scenario_dir,
        } => {
            let search = match (bfs, dfs) {
                (true, true) => bail!("--bfs and --dfs are exclusive"),
                (true, false) => Search::Bfs,
                (false, true) => Search::Dfs,
                (false, false) => search,
            };
            check(&m, search, threads, symmetry, timeout, shrink, scenario_dir)?
        }
        Cmd::Append {
            sessions,
            batches,
            batch_size,
            crashes,
            bug,
        } => append(sessions, batches, batch_size, crashes, &bug),
        Cmd::Explore { m, addr } => {
            println!("serving the explorer on http://{addr}/ (Ctrl-C to stop)");
            murder_config(&m)
                .into_model()
                .checker()
                .serve(addr.as_str());
            0
        }
    };
    if failed > 0 {
        bail!(
            "{failed} propert{} failed",
            if failed == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}
