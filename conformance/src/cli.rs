//! The command line (clap) and the orchestration of a run: corpus, selection, target or embedded
//! servers, suites, reports, exit code.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::corpus;
use crate::report::{self, EXIT_FAIL, EXIT_NO_CASE, EXIT_OK, EXIT_USAGE, bundle, human};
use crate::run::probe::probe;
use crate::run::suite::{CaseReport, Grade, Selected, run_suite};
use crate::run::{RunConfig, Target, TargetInfo, TlsMode, tls};
use crate::scenario::names::Credentials;
use crate::scenario::{Level, Protocol, Scenario, parse_scenario};

/// Black-box conformance runner for MUPDATE (RFC 3656) and IMAP MULTIAPPEND (RFC 3502) servers.
///
/// Without --target, starts the reference servers in-process and runs both suites.
/// Exit codes: 0 every selected required case passed, 1 a failure, 2 target unreachable or bad
/// arguments, 3 the selection matched no case.
#[derive(Debug, Parser)]
#[command(name = "conformance", version, about, long_about = None)]
pub struct Cli {
    /// Run options.
    #[command(flatten)]
    pub opts: Options,
    /// Subcommand.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the case of a failure bundle again (same scenario, same names).
    Replay {
        /// Bundle directory (or its bundle.json).
        bundle: PathBuf,
    },
    /// Print a Markdown compatibility table from JSON reports (`--json` of earlier runs).
    Report(crate::report::compat::ReportArgs),
    /// Parse and oracle-check scenario files (the embedded corpus, or --scenarios DIR) without
    /// running them; exit 0 when all are valid, 2 otherwise.
    Check,
    /// Load a loopback server (or the embedded reference servers) with one workload and print
    /// throughput and latency.
    Bench(crate::bench::BenchArgs),
    /// Random concurrent workloads on a loopback server (or the embedded ones), checked for
    /// linearizability against the model, stream consistency and MULTIAPPEND atomicity.
    Stress(crate::stress::StressArgs),
    /// Check that a mailbox on --target (--user/--password) is a byte-for-byte copy of one on
    /// --source (bodies, flags, internal dates); exit 0 exact, 1 differs, 2 unreadable.
    VerifyCopy(crate::verify::VerifyCopyArgs),
}

/// `--suite`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SuiteArg {
    /// RFC 3656.
    Mupdate,
    /// IMAP MULTIAPPEND.
    Imap,
}

/// `--level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LevelArg {
    /// MUST and ROBUSTNESS cases.
    Must,
    /// Also SHOULD cases.
    Should,
    /// Every case (also MAY).
    All,
}

/// Options of a run (also accepted after `replay`).
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Server to test, HOST:PORT. Without it the embedded reference servers are tested.
    #[arg(long, global = true)]
    pub target: Option<String>,
    /// When --target is a MUPDATE slave: its master, HOST:PORT (same credentials and TLS
    /// options). Enables the cases that write on the master and look on the slave
    /// (`needs: slave master`); without it they are N/A.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub master: Option<String>,
    /// Suite to run (default: detected from the greeting).
    #[arg(long, value_enum, global = true)]
    pub suite: Option<SuiteArg>,
    /// Main user (for MUPDATE: an admin, the writer).
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Password of --user.
    #[arg(long, global = true)]
    pub password: Option<String>,
    /// Second user.
    #[arg(long, global = true)]
    pub user2: Option<String>,
    /// Password of --user2.
    #[arg(long, global = true)]
    pub password2: Option<String>,
    /// SASL mechanism the runner logs in with: PLAIN (--user/--password), or GSSAPI (build
    /// with the cargo feature `gssapi`): the ticket of principal --user from the credential
    /// cache (KRB5CCNAME), service mupdate@HOST / imap@HOST; no password needed.
    #[arg(long, global = true, value_name = "MECH", default_value = "PLAIN")]
    pub sasl_mech: String,
    /// HOST of the GSSAPI service principal (default: the host of --target).
    #[arg(long, global = true, value_name = "HOST")]
    pub sasl_service_host: Option<String>,
    /// Implicit TLS on every connection.
    #[arg(long, global = true, conflicts_with = "starttls")]
    pub tls: bool,
    /// STARTTLS right after every greeting.
    #[arg(long, global = true)]
    pub starttls: bool,
    /// CA certificates (PEM) to verify the target with.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Accept any certificate.
    #[arg(long, global = true, conflicts_with = "ca")]
    pub insecure: bool,
    /// Only cases whose id matches (glob with * and ?, or a substring).
    #[arg(long, global = true, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// Which requirement levels to run.
    #[arg(long, value_enum, default_value = "all", global = true)]
    pub level: LevelArg,
    /// List the selected cases and exit.
    #[arg(long, global = true)]
    pub list: bool,
    /// Cases run in parallel.
    #[arg(long, default_value_t = 4, global = true)]
    pub jobs: usize,
    /// Seconds each expectation may wait.
    #[arg(long, default_value_t = 5, global = true)]
    pub timeout: u64,
    /// Waivers: lines `ID-PATTERN  reason`; listed failures do not fail the run, listed passes do.
    #[arg(long, global = true, value_name = "FILE")]
    pub expect_fail: Option<PathBuf>,
    /// Write a JSON report.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report.
    #[arg(long, global = true, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Use the scenario files under DIR instead of the embedded corpus.
    #[arg(long, global = true, value_name = "DIR")]
    pub scenarios: Option<PathBuf>,
    /// Where failure bundles go.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "conformance-failures"
    )]
    pub bundle_dir: PathBuf,
    /// Cap every expectation's timeout at SECS, even a case's own `timeout:` (for mutant runs,
    /// where a broken server makes cases wait their full timeout).
    #[arg(long, global = true, hide = true, value_name = "SECS")]
    pub max_timeout: Option<u64>,
    /// Run id (6 hex digits) instead of a random one; names in every case derive from it.
    #[arg(long, global = true, hide = true)]
    pub run_id: Option<String>,
    /// Do not run cases whose id matches (glob or exact id; repeatable). They are reported
    /// NOT-RUN, "skipped by the user", and never fail the run (for servers that crash on them).
    #[arg(long, global = true, value_name = "PATTERN")]
    pub skip: Vec<String>,
    /// Print the requirements coverage table (scenarios/requirements/*.md). `auto` (the value
    /// when none is given): with --target, run and show each scenario's grade, else only the
    /// mapping; `map`: only the mapping, no run; `run`: run (embedded servers without --target)
    /// and show grades.
    #[arg(long, global = true, value_enum, num_args = 0..=1, default_missing_value = "auto", value_name = "WHEN")]
    pub coverage: Option<CoverageArg>,
}

/// `--coverage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CoverageArg {
    /// Run when --target is given, else only the mapping.
    Auto,
    /// Only the mapping.
    Map,
    /// Run and show grades.
    Run,
}

fn level_selected(arg: LevelArg, l: Level) -> bool {
    match arg {
        LevelArg::Must => l.is_required(),
        LevelArg::Should => l != Level::May,
        LevelArg::All => true,
    }
}

fn id_selected(filter: Option<&str>, id: &str) -> bool {
    match filter {
        None => true,
        Some(f) if f.contains(['*', '?']) => report::glob(f, id),
        Some(f) => id.contains(f),
    }
}

fn protocol_of(s: SuiteArg) -> Protocol {
    match s {
        SuiteArg::Mupdate => Protocol::Mupdate,
        SuiteArg::Imap => Protocol::Imap,
    }
}

fn credentials(o: &Options) -> Credentials {
    Credentials {
        user: o
            .user
            .clone()
            .map(|u| (u, o.password.clone().unwrap_or_default())),
        user2: o
            .user2
            .clone()
            .map(|u| (u, o.password2.clone().unwrap_or_default())),
    }
}

/// Build the target description from the options.
pub fn target_from(o: &Options, addr: &str) -> Result<Target, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("--target {addr}: expected HOST:PORT"))?;
    port.parse::<u16>()
        .map_err(|_| format!("--target {addr}: bad port {port:?}"))?;
    let tls_mode = if o.tls {
        TlsMode::Implicit
    } else if o.starttls {
        TlsMode::StartTls
    } else {
        TlsMode::Plain
    };
    if tls_mode != TlsMode::Plain && o.ca.is_none() && !o.insecure {
        return Err("--tls/--starttls need --ca FILE or --insecure".into());
    }
    let config = match &o.ca {
        Some(ca) => tls::with_ca_file(ca).map_err(|e| e.to_string())?,
        None => tls::insecure().map_err(|e| e.to_string())?,
    };
    let server_name =
        tls::server_name(host).ok_or_else(|| format!("--target: bad host {host:?}"))?;
    let service_host = o
        .sasl_service_host
        .as_deref()
        .unwrap_or(crate::run::gssapi::host_of(addr));
    let login = crate::run::LoginMech::from_name(&o.sasl_mech, service_host)?;
    Ok(Target {
        addr: addr.to_string(),
        tls_mode,
        tls: config,
        server_name,
        login,
        master: None,
    })
}

/// `--master`: build the master's target and check that it answers as a MUPDATE server with
/// the run's credentials. Nothing to do without `--master` or for an IMAP target.
pub async fn attach_master(
    o: &Options,
    target: &mut Target,
    info: &TargetInfo,
    cfg: &RunConfig,
) -> Result<(), String> {
    let Some(addr) = &o.master else {
        return Ok(());
    };
    if info.protocol != Protocol::Mupdate {
        return Ok(());
    }
    let master = target_from(o, addr).map_err(|e| e.replace("--target", "--master"))?;
    probe(&master, Some(Protocol::Mupdate), &cfg.creds, cfg.timeout)
        .await
        .map_err(|e| format!("--master {addr}: {e}"))?;
    target.master = Some(Box::new(master));
    Ok(())
}

fn random_run_id() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

fn progress_bar(n: usize) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    if std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
            pb.set_style(style);
        }
    } else {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb
}

fn load(o: &Options) -> Result<Vec<Scenario>, String> {
    let files = match &o.scenarios {
        Some(dir) => corpus::from_dir(dir).map_err(|e| e.to_string())?,
        None => corpus::embedded().map_err(|e| e.to_string())?,
    };
    corpus::parse_all(&files).map_err(|e| e.to_string())
}

/// One suite to run: its cases, target and what the target offers.
pub struct SuitePlan {
    /// Cases.
    pub cases: Vec<Selected>,
    /// Target.
    pub target: Arc<Target>,
    /// Probe result.
    pub info: Arc<TargetInfo>,
}

/// Run suites and produce reports, the exit code and the printed text.
pub async fn run_plans(o: &Options, cfg: Arc<RunConfig>, plans: Vec<SuitePlan>) -> i32 {
    let started = Instant::now();
    let total: usize = plans.iter().map(|p| p.cases.len()).sum();
    let pb = progress_bar(total);
    let mut reports: Vec<CaseReport> = Vec::new();
    let mut targets = Vec::new();
    for p in plans {
        targets.push(crate::report::json::JsonTarget {
            addr: p.target.addr.clone(),
            tls: p.target.tls_mode,
            info: (*p.info).clone(),
        });
        reports.extend(run_suite(p.cases, p.target, p.info, cfg.clone(), pb.clone()).await);
    }
    pb.finish_and_clear();
    let elapsed = started.elapsed();
    finish(o, &cfg.run_id, &targets, &mut reports, elapsed)
}

fn finish(
    o: &Options,
    run_id: &str,
    targets: &[crate::report::json::JsonTarget],
    reports: &mut [CaseReport],
    elapsed: Duration,
) -> i32 {
    if let Some(f) = &o.expect_fail {
        match std::fs::read_to_string(f) {
            Ok(text) => report::apply_waivers(reports, &report::parse_waivers(&text)),
            Err(e) => {
                eprintln!("conformance: --expect-fail {}: {e}", f.display());
                return EXIT_USAGE;
            }
        }
    }
    let mut bundles = Vec::new();
    for r in reports.iter() {
        if matches!(r.grade, Grade::Fail | Grade::NonStrict) {
            print!("{}", human::failure_block(r));
            match bundle::write(&o.bundle_dir, r) {
                Ok(d) => bundles.push(d),
                Err(e) => eprintln!("conformance: cannot write bundle: {e}"),
            }
        }
        for w in &r.warnings {
            println!("warning: {}: {w}", r.id);
        }
    }
    print!("{}", human::summary(reports, elapsed));
    if o.coverage.is_some() {
        let (tables, _) = crate::coverage::embedded();
        print!(
            "{}",
            crate::coverage::render(&tables.requirements, Some(reports))
        );
    }
    if !bundles.is_empty() {
        println!(
            "failure bundles in {} (re-run one with `conformance replay DIR --target ...`)",
            o.bundle_dir.display()
        );
    }
    let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    if let Some(path) = &o.json {
        match crate::report::json::render(run_id, ms, targets, reports) {
            Ok(text) => {
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("conformance: --json {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("conformance: JSON: {e}"),
        }
    }
    if let Some(path) = &o.junit {
        match crate::report::junit::render(reports) {
            Ok(text) => {
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("conformance: --junit {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("conformance: JUnit: {e}"),
        }
    }
    let code = report::exit_code(reports);
    if code == EXIT_NO_CASE {
        eprintln!(
            "conformance: no selected case applied to the target (all N/A or not run): nothing was judged"
        );
    }
    code
}

/// Run the command line; returns the exit code.
pub async fn main_with(cli: Cli) -> i32 {
    let o = cli.opts.clone();
    if o.jobs == 0 || o.timeout == 0 {
        eprintln!("conformance: --jobs and --timeout must be at least 1");
        return EXIT_USAGE;
    }
    let run_id = match &o.run_id {
        Some(r) if r.len() == 6 && r.bytes().all(|b| b.is_ascii_hexdigit()) => {
            r.to_ascii_lowercase()
        }
        Some(_) => {
            eprintln!("conformance: --run-id must be 6 hex digits");
            return EXIT_USAGE;
        }
        None => random_run_id(),
    };
    let cfg = RunConfig {
        creds: credentials(&o),
        timeout: Duration::from_secs(o.timeout),
        max_timeout: o.max_timeout.map(Duration::from_secs),
        jobs: o.jobs,
        run_id,
        skip: o.skip.clone(),
    };
    match cli.command {
        Some(Command::Replay { bundle: path }) => return replay(&o, cfg, &path).await,
        Some(Command::Check) => return check(&o),
        Some(Command::Bench(b)) => return crate::bench::main(&o, &b).await,
        Some(Command::Stress(a)) => return crate::stress::main(&o, &a).await,
        Some(Command::Report(args)) => return crate::report::compat::main(&args),
        Some(Command::VerifyCopy(args)) => {
            return crate::verify::main(&o, &args).await;
        }
        None => {}
    }
    let map_only = match o.coverage {
        Some(CoverageArg::Map) => true,
        Some(CoverageArg::Auto) => o.target.is_none(),
        Some(CoverageArg::Run) | None => false,
    };
    if map_only {
        return coverage_map(&o);
    }
    let all = match load(&o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conformance: {e}");
            return EXIT_USAGE;
        }
    };
    let wanted_suite = o.suite.map(protocol_of);
    let selected: Vec<Arc<Scenario>> = all
        .into_iter()
        .filter(|s| level_selected(o.level, s.meta.level))
        .filter(|s| id_selected(o.filter.as_deref(), &s.meta.id))
        .filter(|s| wanted_suite.is_none_or(|p| p == s.meta.protocol))
        .map(Arc::new)
        .collect();
    if o.list {
        for s in &selected {
            println!(
                "{:<50} {:<10} {:<16} {}",
                s.meta.id,
                s.meta.level,
                s.meta.rfc.first().cloned().unwrap_or_default(),
                s.meta.title
            );
        }
        return if selected.is_empty() {
            EXIT_NO_CASE
        } else {
            EXIT_OK
        };
    }
    if selected.is_empty() {
        eprintln!("conformance: the selection matched no case");
        return EXIT_NO_CASE;
    }
    match &o.target {
        Some(addr) => {
            let mut target = match target_from(&o, addr) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("conformance: {e}");
                    return EXIT_USAGE;
                }
            };
            let info = match probe(&target, wanted_suite, &cfg.creds, cfg.timeout).await {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("conformance: {e}");
                    return EXIT_USAGE;
                }
            };
            if let Err(e) = attach_master(&o, &mut target, &info, &cfg).await {
                eprintln!("conformance: {e}");
                return EXIT_USAGE;
            }
            let cases: Vec<Selected> = selected
                .into_iter()
                .filter(|s| s.meta.protocol == info.protocol)
                .enumerate()
                .map(|(index, scenario)| Selected { index, scenario })
                .collect();
            if cases.is_empty() {
                eprintln!(
                    "conformance: the target speaks {}; the selection has no {} case",
                    info.protocol, info.protocol
                );
                return EXIT_NO_CASE;
            }
            eprintln!(
                "conformance: run {} against {} ({}, {} cases)",
                cfg.run_id,
                target.addr,
                info.protocol,
                cases.len()
            );
            let plan = SuitePlan {
                cases,
                target: Arc::new(target),
                info: Arc::new(info),
            };
            run_plans(&o, Arc::new(cfg), vec![plan]).await
        }
        None if !o.sasl_mech.eq_ignore_ascii_case("PLAIN") => {
            eprintln!("conformance: --sasl-mech {} needs --target", o.sasl_mech);
            EXIT_USAGE
        }
        None => crate::embedded::run_embedded(&o, cfg, selected).await,
    }
}

/// `--coverage` without a run: the mapping, the table problems, exit 0 when there is none.
fn coverage_map(o: &Options) -> i32 {
    let all = match load(o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conformance: {e}");
            return EXIT_USAGE;
        }
    };
    let ids: Vec<String> = all.iter().map(|s| s.meta.id.clone()).collect();
    let (tables, mut problems) = crate::coverage::embedded();
    problems.extend(crate::coverage::check(&tables, &ids));
    print!("{}", crate::coverage::render(&tables.requirements, None));
    for p in &problems {
        println!("problem: {p}");
    }
    if problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_USAGE
    }
}

fn check(o: &Options) -> i32 {
    let files = match &o.scenarios {
        Some(dir) => corpus::from_dir(dir),
        None => corpus::embedded(),
    };
    let files = match files {
        Ok(f) => f,
        Err(e) => {
            eprintln!("conformance: {e}");
            return EXIT_USAGE;
        }
    };
    let mut problems = 0;
    for f in &files {
        match parse_scenario(&f.path, &f.text) {
            Err(e) => {
                println!("{e}");
                problems += 1;
            }
            Ok(sc) => {
                if let Err(errs) = crate::scenario::validate::validate(&sc, Some(f.implied_id())) {
                    for e in errs {
                        println!("{e}");
                        problems += 1;
                    }
                }
            }
        }
    }
    if let Err(e) = corpus::parse_all(&files) {
        println!("{e}");
        problems += 1;
    }
    println!("{} files, {problems} problems", files.len());
    if problems == 0 { EXIT_OK } else { EXIT_USAGE }
}

async fn replay(o: &Options, mut cfg: RunConfig, path: &std::path::Path) -> i32 {
    let b = match bundle::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("conformance: {e}");
            return EXIT_USAGE;
        }
    };
    let sc = match parse_scenario(&b.path, &b.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conformance: {e}");
            return EXIT_USAGE;
        }
    };
    cfg.run_id = b.run_id.clone();
    cfg.jobs = 1;
    let Some(addr) = o.target.clone() else {
        eprintln!("conformance: replay needs --target HOST:PORT");
        return EXIT_USAGE;
    };
    let mut target = match target_from(o, &addr) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("conformance: {e}");
            return EXIT_USAGE;
        }
    };
    let info = match probe(&target, Some(sc.meta.protocol), &cfg.creds, cfg.timeout).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("conformance: {e}");
            return EXIT_USAGE;
        }
    };
    if let Err(e) = attach_master(o, &mut target, &info, &cfg).await {
        eprintln!("conformance: {e}");
        return EXIT_USAGE;
    }
    eprintln!(
        "conformance: replaying {} (run {}, case {})",
        b.id, b.run_id, b.index
    );
    let plan = SuitePlan {
        cases: vec![Selected {
            index: b.index,
            scenario: Arc::new(sc),
        }],
        target: Arc::new(target),
        info: Arc::new(info),
    };
    let code = run_plans(o, Arc::new(cfg), vec![plan]).await;
    if code == EXIT_OK {
        println!("replay: {} passes now", b.id);
    }
    if code == EXIT_FAIL {
        println!("replay: {} still fails", b.id);
    }
    code
}
