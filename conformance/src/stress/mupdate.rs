//! The MUPDATE workload: N clients send random RESERVE / ACTIVATE / DEACTIVATE / DELETE / FIND
//! on a small pool of names (so they conflict), S UPDATE streams record every line, then final
//! FINDs, a NOOP barrier on each stream, and cleanup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use murder_model::{Command, MailboxEntry};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Spec;
use super::history::{
    FINAL_CLIENT, Op, Outcome, Status, StreamLine, StreamLog, parse_stream_line, us_since,
};
use crate::bench::client::{Client, head, quote, status_of};
use crate::bench::{BenchError, Budget};
use crate::run::conn::ReadError;

/// How often a streaming client looks at the stop flag while no line arrives.
pub const STREAM_POLL: Duration = Duration::from_millis(200);

/// What one MUPDATE run recorded.
#[derive(Debug, Default)]
pub struct MupdateRun {
    /// Every op, final FINDs included, ids in invocation order.
    pub ops: Vec<Op>,
    /// Every stream.
    pub streams: Vec<StreamLog>,
    /// State of each pool name after every writer stopped (from the final FINDs), when every
    /// final FIND answered.
    pub final_states: Option<BTreeMap<Vec<u8>, Option<MailboxEntry>>>,
    /// The pool.
    pub names: Vec<Vec<u8>>,
    /// Wall-clock time of the workload.
    pub elapsed: Duration,
}

/// The pool of names of a run: `stress.RUN.nI`.
pub fn pool(run_id: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("stress.{run_id}.n{i}").into_bytes())
        .collect()
}

/// The deterministic op sequence of one client: the same seed and client number give the same
/// commands (the interleaving with other clients depends on timing).
pub struct OpGen {
    rng: StdRng,
    client: usize,
}

impl OpGen {
    /// The generator of `client` under `seed`.
    pub fn new(seed: u64, client: usize) -> OpGen {
        let mix = seed
            ^ (client as u64)
                .wrapping_add(1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        OpGen {
            rng: StdRng::seed_from_u64(mix),
            client,
        }
    }

    /// The next command on one of `names`.
    pub fn next(&mut self, names: &[Vec<u8>]) -> Command {
        let name = names
            .get(self.rng.random_range(0..names.len().max(1)))
            .cloned()
            .unwrap_or_default();
        let location = format!("s{}.invalid!p", self.rng.random_range(0..3)).into_bytes();
        match self.rng.random_range(0..100) {
            0..25 => Command::Reserve { name, location },
            25..50 => Command::Activate {
                name,
                location,
                acl: format!("c{}\tlrs\t", self.client).into_bytes(),
            },
            50..65 => Command::Deactivate { name, location },
            65..80 => Command::Delete { name },
            _ => Command::Find { name },
        }
    }
}

/// The command's text after the tag.
pub fn render(cmd: &Command) -> String {
    let q = |b: &[u8]| quote(&String::from_utf8_lossy(b));
    match cmd {
        Command::Reserve { name, location } => format!("RESERVE {} {}", q(name), q(location)),
        Command::Activate {
            name,
            location,
            acl,
        } => format!("ACTIVATE {} {} {}", q(name), q(location), q(acl)),
        Command::Deactivate { name, location } => {
            format!("DEACTIVATE {} {}", q(name), q(location))
        }
        Command::Delete { name } => format!("DELETE {}", q(name)),
        Command::Find { name } => format!("FIND {}", q(name)),
        Command::List { prefix: None } => "LIST".into(),
        Command::List { prefix: Some(p) } => format!("LIST {}", q(p)),
    }
}

/// Send one command and record it; `Err` (after recording it as pending) when the connection
/// failed, after which the client must stop.
async fn record(
    c: &mut Client,
    client: usize,
    command: Command,
    start: Instant,
    ops: &mut Vec<Op>,
) -> Result<(), BenchError> {
    let tag = c.next_tag();
    let sent = format!("{tag} {}\r\n", render(&command)).into_bytes();
    let invoke_us = us_since(start);
    let mut op = Op {
        id: 0,
        client,
        command,
        invoke_us,
        complete_us: None,
        outcome: None,
        sent,
        received: Vec::new(),
    };
    let result: Result<Status, BenchError> = async {
        c.send(&op.sent).await?;
        loop {
            let line = c.line().await?;
            let (t, word) = head(&line.bytes);
            op.received.push(line.bytes);
            if t == tag.as_bytes()
                && let Some(s) = status_of(&word)
            {
                return Ok(s);
            }
        }
    }
    .await;
    match result {
        Ok(status) => {
            op.complete_us = Some(us_since(start));
            op.outcome = Outcome::parse(tag.as_bytes(), status, &op.received)
                .filter(|o| o.status != Status::Bad);
            ops.push(op);
            Ok(())
        }
        Err(e) => {
            op.received.push(format!("(no reply: {e})").into_bytes());
            ops.push(op);
            Err(e)
        }
    }
}

async fn login(spec: &Spec) -> Result<Client, BenchError> {
    let mut c = Client::connect(&spec.addr, spec.timeout).await?;
    c.mupdate_login(&spec.user, &spec.password).await?;
    Ok(c)
}

/// One UPDATE stream: register, record every line about the pool until `stop`, then the NOOP
/// barrier.
async fn stream(
    mut c: Client,
    id: usize,
    tag: String,
    names: Arc<Vec<Vec<u8>>>,
    start: Instant,
    stop: Arc<AtomicBool>,
    timeout: Duration,
) -> StreamLog {
    let mut log = StreamLog {
        id,
        ..StreamLog::default()
    };
    let keep = |log: &mut StreamLog, bytes: &[u8]| {
        if let Some((name, state)) = parse_stream_line(tag.as_bytes(), bytes)
            && names.contains(&name)
        {
            log.lines.push(StreamLine {
                at_us: us_since(start),
                name,
                state,
                raw: bytes.to_vec(),
            });
        }
    };
    c.timeout = STREAM_POLL;
    loop {
        match c.line().await {
            Ok(line) => keep(&mut log, &line.bytes),
            Err(BenchError::Read(ReadError::Timeout(_))) if !stop.load(Ordering::Relaxed) => {}
            Err(BenchError::Read(ReadError::Timeout(_))) => break,
            Err(e) => {
                log.error = Some(format!("stream ended: {e}"));
                return log;
            }
        }
    }
    c.timeout = timeout;
    let noop = c.next_tag();
    if let Err(e) = c.send(format!("{noop} NOOP\r\n").as_bytes()).await {
        log.error = Some(format!("NOOP: {e}"));
        return log;
    }
    loop {
        match c.line().await {
            Ok(line) => {
                let (t, word) = head(&line.bytes);
                if t == noop.as_bytes() && status_of(&word).is_some() {
                    log.barrier_ok = word == "OK";
                    if !log.barrier_ok {
                        log.error = Some(String::from_utf8_lossy(&line.bytes).into_owned());
                    }
                    return log;
                }
                keep(&mut log, &line.bytes);
            }
            Err(e) => {
                log.error = Some(format!("NOOP: {e}"));
                return log;
            }
        }
    }
}

/// Register `n` UPDATE streams (each returns once its UPDATE is answered OK).
async fn start_streams(
    spec: &Spec,
    names: &Arc<Vec<Vec<u8>>>,
    start: Instant,
    stop: &Arc<AtomicBool>,
) -> Result<JoinSet<StreamLog>, BenchError> {
    let mut set = JoinSet::new();
    for id in 0..spec.streams {
        let mut c = login(spec).await?;
        let tag = c.next_tag();
        c.send(format!("{tag} UPDATE\r\n").as_bytes()).await?;
        let (s, _) = c.wait(&tag).await?;
        if s != Status::Ok {
            return Err(BenchError::Protocol(format!("UPDATE answered {s:?}")));
        }
        let (names, stop) = (names.clone(), stop.clone());
        // Streamed lines carry the UPDATE command's tag.
        set.spawn(stream(c, id, tag, names, start, stop, spec.timeout));
    }
    Ok(set)
}

/// Run the workload and collect the history.
pub async fn run(spec: &Spec) -> Result<MupdateRun, BenchError> {
    let names = Arc::new(pool(&spec.run_id, spec.names));
    // The names start absent (the checkers assume it): remove leftovers of an earlier run that
    // reused this run id (`--run-id`), before any stream registers.
    let mut setup = login(spec).await?;
    for name in names.iter() {
        setup
            .command(&format!("DELETE {}", quote(&String::from_utf8_lossy(name))))
            .await?;
    }
    drop(setup);
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut streams = start_streams(spec, &names, start, &stop).await?;
    let mut clients = Vec::with_capacity(spec.clients);
    for _ in 0..spec.clients {
        clients.push(login(spec).await?);
    }
    let budget = Arc::new(Budget::new(spec.duration, spec.ops));
    let mut set = JoinSet::new();
    for (ci, mut c) in clients.into_iter().enumerate() {
        let (budget, names, seed) = (budget.clone(), names.clone(), spec.seed);
        set.spawn(async move {
            let mut generator = OpGen::new(seed, ci);
            let mut ops = Vec::new();
            while budget.take() {
                let cmd = generator.next(&names);
                if record(&mut c, ci, cmd, start, &mut ops).await.is_err() {
                    break;
                }
            }
            ops
        });
    }
    let mut ops = Vec::new();
    while let Some(j) = set.join_next().await {
        ops.extend(j.map_err(|e| BenchError::Protocol(format!("client task: {e}")))?);
    }
    let elapsed = start.elapsed();
    // The final FINDs. A server that stopped answering (crashed) still gets its history
    // checked: the finals are then unknown.
    let mut finals = BTreeMap::new();
    let mut final_conn = login(spec).await.ok();
    let mut all_answered = final_conn.is_some();
    if let Some(c) = final_conn.as_mut() {
        for name in names.iter() {
            let cmd = Command::Find { name: name.clone() };
            let before = ops.len();
            if record(c, FINAL_CLIENT, cmd, start, &mut ops).await.is_err() {
                all_answered = false;
                break;
            }
            match ops.get(before).and_then(|o| o.outcome.as_ref()) {
                Some(o) if o.status == Status::Ok => {
                    let state = o
                        .data
                        .iter()
                        .find(|r| &r.name == name)
                        .map(|r| r.entry.clone());
                    finals.insert(name.clone(), state);
                }
                _ => all_answered = false,
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    while let Some(j) = streams.join_next().await {
        logs.push(j.map_err(|e| BenchError::Protocol(format!("stream task: {e}")))?);
    }
    logs.sort_by_key(|l| l.id);
    // Cleanup: the pool's names are this run's own.
    if let Some(c) = final_conn.as_mut() {
        for (name, state) in &finals {
            if state.is_some() {
                let _ = c
                    .command(&format!("DELETE {}", quote(&String::from_utf8_lossy(name))))
                    .await;
            }
        }
    }
    ops.sort_by_key(|o| (o.invoke_us, o.client));
    for (i, o) in ops.iter_mut().enumerate() {
        o.id = i;
    }
    Ok(MupdateRun {
        ops,
        streams: logs,
        final_states: all_answered.then_some(finals),
        names: names.to_vec(),
        elapsed,
    })
}
