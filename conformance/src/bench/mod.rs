//! `conformance bench`: a black-box load generator for MUPDATE and IMAP MULTIAPPEND servers.
//!
//! It speaks through the runner's own connection and framer ([`crate::run::conn`],
//! [`crate::wire`]), never through the reference server's codecs, so its numbers compare servers
//! on equal terms. Every run is bounded by `--duration` and/or `--ops`.
//!
//! Only loopback targets (127.0.0.0/8, ::1, `localhost`) are accepted: this workplace forbids
//! generating load against other hosts, and a benchmark across a network measures the network.
//!
//! Workloads ([`Workload`]): `mupdate-write`, `mupdate-fanout`, `mupdate-list`,
//! `imap-multiappend`; see each function in [`mupdate`] and [`imap`] for what is measured.

pub mod client;
pub mod imap;
pub mod mupdate;
pub mod progress;
pub mod stats;

use std::io::IsTerminal as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::Options;
use crate::report::{EXIT_FAIL, EXIT_OK, EXIT_USAGE};
use crate::run::conn::ReadError;
use stats::Samples;

/// Default run length when neither `--duration` nor `--ops` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// How many acknowledged writes `mupdate-write` verifies with FIND at most (all when fewer).
pub const VERIFY_SAMPLE: usize = 2000;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A read or write failed.
    #[error("{0}")]
    Read(#[from] ReadError),
    /// The server answered something the workload cannot go on with.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Bad arguments (a non-loopback target).
    #[error("{0}")]
    Usage(String),
}

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// RESERVE + ACTIVATE of fresh names by N clients; acknowledged writes verified with FIND.
    MupdateWrite,
    /// Streaming UPDATE clients while writers ACTIVATE at a fixed rate; fan-out latency.
    MupdateFanout,
    /// Populate M mailboxes, then LIST records/s and a fresh UPDATE's initial list time.
    MupdateList,
    /// MULTIAPPEND batches of small messages, large messages, and single APPENDs.
    ImapMultiappend,
}

impl Workload {
    /// Whether the workload talks IMAP (else MUPDATE).
    pub fn is_imap(self) -> bool {
        self == Workload::ImapMultiappend
    }

    /// Default number of (writing) clients.
    pub fn default_clients(self) -> usize {
        match self {
            Workload::MupdateWrite => 8,
            Workload::MupdateFanout | Workload::MupdateList => 4,
            Workload::ImapMultiappend => 1,
        }
    }
}

/// Arguments of `conformance bench` (`--target`, `--user`, `--password`, `--json`, `--timeout` are
/// the runner's global options).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Concurrent (writing) clients [default: 8 for mupdate-write, 4 for the other MUPDATE
    /// workloads, 1 for imap-multiappend].
    #[arg(long)]
    pub clients: Option<usize>,
    /// Seconds each measured phase runs [default: 10 when --ops is not given].
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Operations each measured phase performs at most (write pairs, writes, LISTs, APPEND
    /// commands).
    #[arg(long, value_name = "N")]
    pub ops: Option<u64>,
    /// mupdate-fanout: streaming UPDATE clients.
    #[arg(long, default_value_t = 100)]
    pub streams: usize,
    /// mupdate-fanout: total writes per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// mupdate-list: mailboxes to populate.
    #[arg(long, default_value_t = 100_000)]
    pub mailboxes: u64,
    /// imap-multiappend: messages per MULTIAPPEND command.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// imap-multiappend: size of the small messages in bytes.
    #[arg(long, default_value_t = 2048)]
    pub msg_size: usize,
    /// imap-multiappend: large messages per command.
    #[arg(long, default_value_t = 10)]
    pub large_count: usize,
    /// imap-multiappend: size of the large messages in bytes.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub large_size: usize,
    /// Report VmHWM/VmRSS of this local process before and after (the server's pid). With the
    /// embedded servers, the runner's own process is reported.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

/// Everything a workload needs, resolved from the arguments.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Workload.
    pub workload: Workload,
    /// HOST:PORT (loopback).
    pub addr: String,
    /// User (MUPDATE: an admin).
    pub user: String,
    /// Password.
    pub password: String,
    /// Concurrent (writing) clients.
    pub clients: usize,
    /// Phase length.
    pub duration: Option<Duration>,
    /// Phase operation cap.
    pub ops: Option<u64>,
    /// See [`BenchArgs::streams`].
    pub streams: usize,
    /// See [`BenchArgs::rate`].
    pub rate: u64,
    /// See [`BenchArgs::mailboxes`].
    pub mailboxes: u64,
    /// See [`BenchArgs::batch`].
    pub batch: usize,
    /// See [`BenchArgs::msg_size`].
    pub msg_size: usize,
    /// See [`BenchArgs::large_count`].
    pub large_count: usize,
    /// See [`BenchArgs::large_size`].
    pub large_size: usize,
    /// Longest wait for any single reply.
    pub timeout: Duration,
    /// Makes every name of this run unique (6 hex digits).
    pub run_id: String,
}

impl Spec {
    /// A spec with the defaults of `workload` (tests and the CLI start from it).
    pub fn new(workload: Workload, addr: &str, user: &str, password: &str) -> Spec {
        Spec {
            workload,
            addr: addr.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            clients: workload.default_clients(),
            duration: None,
            ops: None,
            streams: 100,
            rate: 1000,
            mailboxes: 100_000,
            batch: 100,
            msg_size: 2048,
            large_count: 10,
            large_size: 10 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            run_id: format!("{:06x}", rand::random::<u32>() & 0xff_ffff),
        }
    }

    /// The budget of one phase.
    pub fn budget(&self) -> Budget {
        let duration = match (self.duration, self.ops) {
            (None, None) => Some(DEFAULT_DURATION),
            (d, _) => d,
        };
        Budget::new(duration, self.ops)
    }
}

/// The bound of one phase: a deadline, an operation count, or both (whichever comes first).
#[derive(Debug)]
pub struct Budget {
    deadline: Option<Instant>,
    ops: Option<u64>,
    taken: AtomicU64,
}

impl Budget {
    /// A budget ending at `duration` from now and/or after `ops` operations (whichever comes
    /// first; `None` does not bound).
    pub fn new(duration: Option<Duration>, ops: Option<u64>) -> Budget {
        Budget {
            deadline: duration.map(|d| Instant::now() + d),
            ops,
            taken: AtomicU64::new(0),
        }
    }

    /// Claim one more operation; false once the phase is over.
    pub fn take(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        let n = self.taken.fetch_add(1, Ordering::Relaxed);
        self.ops.is_none_or(|max| n < max)
    }

    /// Whether the phase is over (without claiming).
    pub fn over(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
            || self
                .ops
                .is_some_and(|max| self.taken.load(Ordering::Relaxed) >= max)
    }
}

/// One measured phase of a workload.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    /// Phase name (`write-pairs`, `multiappend-2k`, ...).
    pub name: String,
    /// What one unit of `count` is (`pairs`, `msgs`, `records`, ...).
    pub unit: String,
    /// Completed units.
    pub count: u64,
    /// Failed operations (NO/BAD/connection errors).
    pub errors: u64,
    /// Wall-clock seconds of the phase.
    pub seconds: f64,
    /// `count / seconds`.
    pub per_second: f64,
    /// Payload bytes moved (0 when not meaningful).
    pub bytes: u64,
    /// `bytes / seconds` in MB/s (10^6).
    pub mb_per_second: f64,
    /// Latency samples.
    pub samples: usize,
    /// Median latency (ms).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency (ms).
    pub p99_ms: Option<f64>,
    /// Largest latency (ms).
    pub max_ms: Option<f64>,
}

impl PhaseResult {
    /// Summarise a phase.
    pub fn new(
        name: &str,
        unit: &str,
        count: u64,
        errors: u64,
        elapsed: Duration,
        bytes: u64,
        lat: &mut Samples,
    ) -> PhaseResult {
        let secs = elapsed.as_secs_f64().max(1e-9);
        PhaseResult {
            name: name.into(),
            unit: unit.into(),
            count,
            errors,
            seconds: secs,
            per_second: count as f64 / secs,
            bytes,
            mb_per_second: bytes as f64 / secs / 1e6,
            samples: lat.len(),
            p50_ms: stats::ms(lat.quantile(0.5)),
            p99_ms: stats::ms(lat.quantile(0.99)),
            max_ms: stats::ms(lat.max()),
        }
    }
}

/// Memory of the server process (kB from /proc/PID/status).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rss {
    /// The process.
    pub pid: u32,
    /// VmRSS before.
    pub rss_before_kb: Option<u64>,
    /// VmHWM (peak RSS) before.
    pub hwm_before_kb: Option<u64>,
    /// VmRSS after.
    pub rss_after_kb: Option<u64>,
    /// VmHWM (peak RSS) after.
    pub hwm_after_kb: Option<u64>,
}

/// `VmRSS` and `VmHWM` of a local process, in kB.
pub fn read_rss(pid: u32) -> (Option<u64>, Option<u64>) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Workload.
    pub workload: Workload,
    /// HOST:PORT, or `embedded`.
    pub target: String,
    /// Concurrent (writing) clients.
    pub clients: usize,
    /// Measured phases.
    pub phases: Vec<PhaseResult>,
    /// Checks and extra figures (`verified 2000/2000`, `streams dropped 0`).
    pub notes: Vec<String>,
    /// Named figures for scripts (`verified`, `missing`, `streams_dropped`, ...).
    pub figures: std::collections::BTreeMap<String, f64>,
    /// Server memory, when a pid is known.
    pub rss: Option<Rss>,
    /// No error and every check passed.
    pub ok: bool,
}

/// Refuse any target that is not loopback: an IP literal in 127.0.0.0/8 or ::1 (`[::1]:P` or
/// `::1:P`), or `localhost`. No name is resolved, so no other host is ever contacted.
pub fn check_loopback(addr: &str) -> Result<(), BenchError> {
    let refuse = || {
        BenchError::Usage(format!(
            "--target {addr}: bench only loads loopback servers (127.0.0.0/8, ::1, localhost); \
             load on other hosts is not allowed here"
        ))
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(refuse)?;
    port.parse::<u16>().map_err(|_| refuse())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Ok(()),
        _ => Err(refuse()),
    }
}

/// The credentials for a loopback `--target` of a load-generating subcommand (`bench`,
/// `stress`): refuses a non-loopback target and a missing `--user`.
pub fn loopback_login(o: &Options, addr: &str) -> Result<(String, String), BenchError> {
    check_loopback(addr)?;
    let user = o
        .user
        .clone()
        .ok_or_else(|| BenchError::Usage("--target needs --user and --password".into()))?;
    Ok((user, o.password.clone().unwrap_or_default()))
}

/// Run one workload against `spec.addr`.
pub async fn execute(
    spec: &Spec,
    progress: &progress::Progress,
) -> Result<BenchResult, BenchError> {
    check_loopback(&spec.addr)?;
    let mut r = match spec.workload {
        Workload::MupdateWrite => mupdate::write(spec, progress).await?,
        Workload::MupdateFanout => mupdate::fanout(spec, progress).await?,
        Workload::MupdateList => mupdate::list(spec, progress).await?,
        Workload::ImapMultiappend => imap::multiappend(spec, progress).await?,
    };
    r.ok = r.ok && r.phases.iter().all(|p| p.errors == 0);
    Ok(r)
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

/// The final table.
pub fn render(r: &BenchResult) -> String {
    let mut s = format!(
        "workload {:?}  target {}  clients {}\n",
        r.workload, r.target, r.clients
    );
    s.push_str(&format!(
        "{:<22} {:>10} {:>8} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9}\n",
        "phase", "count", "errors", "secs", "per_s", "MB/s", "p50_ms", "p99_ms", "max_ms"
    ));
    for p in &r.phases {
        s.push_str(&format!(
            "{:<22} {:>10} {:>8} {:>8.2} {:>12.1} {:>9.2} {:>9} {:>9} {:>9}\n",
            format!("{} ({})", p.name, p.unit),
            p.count,
            p.errors,
            p.seconds,
            p.per_second,
            p.mb_per_second,
            fmt_opt(p.p50_ms),
            fmt_opt(p.p99_ms),
            fmt_opt(p.max_ms)
        ));
    }
    for n in &r.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    if let Some(m) = &r.rss {
        let kb = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| format!("{v} kB"));
        s.push_str(&format!(
            "server pid {}: VmRSS {} -> {}, VmHWM (peak) {} -> {}\n",
            m.pid,
            kb(m.rss_before_kb),
            kb(m.rss_after_kb),
            kb(m.hwm_before_kb),
            kb(m.hwm_after_kb)
        ));
    }
    s.push_str(if r.ok {
        "result: ok\n"
    } else {
        "result: ERRORS\n"
    });
    s
}

fn spec_from(o: &Options, b: &BenchArgs, addr: &str, user: &str, password: &str) -> Spec {
    let mut spec = Spec::new(b.workload, addr, user, password);
    if let Some(c) = b.clients {
        spec.clients = c.max(1);
    }
    spec.duration = b.duration.map(|s| Duration::from_secs_f64(s.max(0.001)));
    spec.ops = b.ops;
    spec.streams = b.streams;
    spec.rate = b.rate.max(1);
    spec.mailboxes = b.mailboxes;
    spec.batch = b.batch.max(1);
    spec.msg_size = b.msg_size.max(64);
    spec.large_count = b.large_count.max(1);
    spec.large_size = b.large_size.max(64);
    spec.timeout = Duration::from_secs(o.timeout.max(30));
    spec
}

/// `conformance bench`: resolve the target (or start the embedded servers on disk), run, print
/// the table on stdout, write `--json`. Exit 0 when every operation and check succeeded, 1 when
/// some failed, 2 for bad arguments or an unreachable target.
pub async fn main(o: &Options, b: &BenchArgs) -> i32 {
    let progress = progress::Progress::new(std::io::stderr().is_terminal());
    let (result, pid) = match &o.target {
        Some(addr) => {
            let (user, password) = match loopback_login(o, addr) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("conformance bench: {e}");
                    return EXIT_USAGE;
                }
            };
            let spec = spec_from(o, b, addr, &user, &password);
            let before = b.server_pid.map(read_rss);
            let r = execute(&spec, &progress).await;
            (r, b.server_pid.zip(before))
        }
        None => {
            let emb = match crate::embedded::start_on_disk().await {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("conformance bench: {e}");
                    return EXIT_USAGE;
                }
            };
            let Some((user, pw)) = emb.creds.user.clone() else {
                return EXIT_USAGE;
            };
            let addr = if b.workload.is_imap() {
                emb.imap.local_addr()
            } else {
                emb.mupdate.local_addr()
            };
            let spec = spec_from(o, b, &addr.to_string(), &user, &pw);
            let pid = std::process::id();
            let before = read_rss(pid);
            let r = execute(&spec, &progress).await;
            emb.shutdown().await;
            (r, Some((pid, before)))
        }
    };
    progress.finish();
    let mut r = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conformance bench: {e}");
            return EXIT_USAGE;
        }
    };
    if o.target.is_none() {
        r.target = format!("embedded ({})", r.target);
    }
    if let Some((pid, (rss_b, hwm_b))) = pid {
        let (rss_a, hwm_a) = read_rss(pid);
        r.rss = Some(Rss {
            pid,
            rss_before_kb: rss_b,
            hwm_before_kb: hwm_b,
            rss_after_kb: rss_a,
            hwm_after_kb: hwm_a,
        });
    }
    print!("{}", render(&r));
    if let Some(path) = &o.json
        && let Err(e) = write_json(path, &r)
    {
        eprintln!("conformance bench: --json {}: {e}", path.display());
        return EXIT_USAGE;
    }
    if r.ok { EXIT_OK } else { EXIT_FAIL }
}

/// Write `value` as pretty JSON and a final newline (`--json` of `bench` and `stress`).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// Tally one operation's reply: `Some(true)` for OK, `Some(false)` for NO/BAD (counted as an
/// error; the client goes on), `None` when the connection failed (counted; the client stops).
pub fn tally(
    r: Result<client::Status, BenchError>,
    errors: &mut u64,
    progress: &progress::Progress,
) -> Option<bool> {
    match r {
        Ok(client::Status::Ok) => Some(true),
        Ok(_) => {
            *errors += 1;
            progress.error();
            Some(false)
        }
        Err(_) => {
            *errors += 1;
            progress.error();
            None
        }
    }
}

/// Shared counters of a phase across client tasks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Completed units.
    pub done: AtomicU64,
    /// Failed operations.
    pub errors: AtomicU64,
    /// Payload bytes.
    pub bytes: AtomicU64,
}

impl Counters {
    /// A fresh set.
    pub fn new() -> Arc<Counters> {
        Arc::new(Counters::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_only() {
        for ok in [
            "127.0.0.1:143",
            "127.1.2.3:1",
            "[::1]:3905",
            "::1:3905",
            "localhost:143",
            "LOCALHOST:1",
        ] {
            assert!(check_loopback(ok).is_ok(), "{ok} refused");
        }
        for bad in [
            "10.0.0.1:143",
            "192.168.1.1:3905",
            "0.0.0.0:143",
            "[::]:143",
            "example.com:143",
            "localhost.example.com:143",
            "128.0.0.1:143",
            "127.0.0.1",
            "127.0.0.1:notaport",
            "[2001:db8::1]:143",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn budget_by_count() {
        let mut s = Spec::new(Workload::MupdateWrite, "127.0.0.1:1", "u", "p");
        s.ops = Some(3);
        let b = s.budget();
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
        assert!(b.over());
    }

    #[test]
    fn reads_own_rss() {
        let (rss, hwm) = read_rss(std::process::id());
        assert!(rss.is_some_and(|r| r > 0));
        assert!(hwm >= rss);
    }
}
