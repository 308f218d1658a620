//! The MUPDATE workloads: durable writes, UPDATE stream fan-out, and LIST of a large database.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::client::{Client, Status, head, ok_or, quote, third_string};
use super::progress::Progress;
use super::stats::Samples;
use super::{BenchError, BenchResult, PhaseResult, Spec, VERIFY_SAMPLE, tally};
use crate::run::conn::ReadError;
use crate::wire::frame::Line;

/// Location every benchmark mailbox is activated with (`server!partition`, as Cyrus backends
/// publish).
pub const LOCATION: &str = "bench.invalid!default";
/// ACL every benchmark mailbox is activated with.
pub const ACL: &str = "anyone\tlrs\t";
/// Commands per pipelined batch (population, verification).
pub const PIPELINE: usize = 500;
/// How long fan-out waits, after the last write, for every stream to show every write.
pub const FANOUT_GRACE: Duration = Duration::from_secs(10);
/// Read timeout of a streaming client between checks of the stop flag.
pub const STREAM_POLL: Duration = Duration::from_millis(500);

async fn login(spec: &Spec) -> Result<Client, BenchError> {
    let mut c = Client::connect(&spec.addr, spec.timeout).await?;
    c.mupdate_login(&spec.user, &spec.password).await?;
    Ok(c)
}

fn activate(name: &str) -> String {
    format!(
        "ACTIVATE {} {} {}",
        quote(name),
        quote(LOCATION),
        quote(ACL)
    )
}

/// Send every command at once, then collect the replies in order.
pub async fn pipeline(
    c: &mut Client,
    cmds: &[String],
) -> Result<Vec<(Status, Vec<Line>)>, BenchError> {
    let mut out = Vec::with_capacity(cmds.len());
    let mut buf = String::new();
    let mut tags = Vec::with_capacity(cmds.len());
    for cmd in cmds {
        let tag = c.next_tag();
        buf.push_str(&format!("{tag} {cmd}\r\n"));
        tags.push(tag);
    }
    c.send(buf.as_bytes()).await?;
    for tag in tags {
        out.push(c.wait(&tag).await?);
    }
    Ok(out)
}

fn result(spec: &Spec, phases: Vec<PhaseResult>) -> BenchResult {
    BenchResult {
        workload: spec.workload,
        target: spec.addr.clone(),
        clients: spec.clients,
        phases,
        notes: Vec::new(),
        figures: BTreeMap::new(),
        rss: None,
        ok: true,
    }
}

async fn connect_all(spec: &Spec, n: usize) -> Result<Vec<Client>, BenchError> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(login(spec).await?);
    }
    Ok(v)
}

/// `mupdate-write`: each of `clients` connections does RESERVE then ACTIVATE of fresh names
/// until the budget is spent; one pair is one unit, its latency is RESERVE sent → ACTIVATE OK.
/// Afterwards every acknowledged name (or a random sample of [`VERIFY_SAMPLE`]) is looked up
/// with FIND on a new connection; a missing one fails the run.
pub async fn write(spec: &Spec, progress: &Progress) -> Result<BenchResult, BenchError> {
    progress.phase("mupdate-write: RESERVE+ACTIVATE");
    let clients = connect_all(spec, spec.clients).await?;
    let budget = Arc::new(spec.budget());
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (ci, mut c) in clients.into_iter().enumerate() {
        let budget = budget.clone();
        let progress = progress.clone();
        let run = spec.run_id.clone();
        set.spawn(async move {
            let mut lat = Samples::new();
            let mut acked = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while budget.take() {
                let name = format!("bench.{run}.w{ci}.{i}");
                i += 1;
                let t0 = Instant::now();
                let reserve = format!("RESERVE {} {}", quote(&name), quote(LOCATION));
                let r = match c.command(&reserve).await {
                    Ok((Status::Ok, _)) => c.command(&activate(&name)).await,
                    other => other,
                };
                match tally(r.map(|(s, _)| s), &mut errors, &progress) {
                    Some(true) => {
                        lat.push(t0.elapsed());
                        acked.push(name);
                        progress.add(1);
                    }
                    Some(false) => {}
                    None => break,
                }
            }
            (lat, acked, errors)
        });
    }
    let mut lat = Samples::new();
    let mut acked = Vec::new();
    let mut errors = 0;
    while let Some(j) = set.join_next().await {
        let (l, a, e) = j.map_err(|e| BenchError::Protocol(format!("client task: {e}")))?;
        lat.extend(l);
        acked.extend(a);
        errors += e;
    }
    let elapsed = started.elapsed();
    let pairs = acked.len() as u64;
    let phase = PhaseResult::new("write", "pairs", pairs, errors, elapsed, 0, &mut lat);
    progress.phase("mupdate-write: verify with FIND");
    let sample: Vec<String> = if acked.len() <= VERIFY_SAMPLE {
        acked
    } else {
        let mut rng = rand::rng();
        rand::seq::index::sample(&mut rng, acked.len(), VERIFY_SAMPLE)
            .into_iter()
            .filter_map(|i| acked.get(i).cloned())
            .collect()
    };
    let mut c = login(spec).await?;
    let mut missing = 0u64;
    for chunk in sample.chunks(PIPELINE) {
        let cmds: Vec<String> = chunk.iter().map(|n| format!("FIND {}", quote(n))).collect();
        for (s, lines) in pipeline(&mut c, &cmds).await? {
            let found = s == Status::Ok && lines.iter().any(|l| head(&l.bytes).1 == "MAILBOX");
            if !found {
                missing += 1;
            }
        }
    }
    let mut r = result(spec, vec![phase]);
    r.notes.push(format!(
        "verified with FIND: {}/{} acknowledged writes found ({} checked of {pairs})",
        sample.len() as u64 - missing,
        sample.len(),
        sample.len()
    ));
    r.figures.insert("verified".into(), sample.len() as f64);
    r.figures.insert("missing".into(), missing as f64);
    r.ok = missing == 0;
    Ok(r)
}

/// Per mailbox name: how many streams showed it, and when the last one did.
type Seen = Arc<Mutex<HashMap<Vec<u8>, (usize, Instant)>>>;

/// `mupdate-fanout`: `streams` clients in UPDATE mode; `clients` writers ACTIVATE fresh names at
/// `rate` writes/s in total. Latency of a write: its OK → the matching MAILBOX line on the last
/// stream to show it (0 when every stream had it before the writer's OK arrived). A stream that
/// ends (EOF, error) counts as dropped; a write not shown by every stream within
/// [`FANOUT_GRACE`] after the last write counts as missed.
pub async fn fanout(spec: &Spec, progress: &Progress) -> Result<BenchResult, BenchError> {
    progress.phase("mupdate-fanout: connecting streams");
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut streams = JoinSet::new();
    let mut initial = Samples::new();
    for _ in 0..spec.streams {
        let mut c = login(spec).await?;
        let tag = c.next_tag();
        let t0 = Instant::now();
        c.send(format!("{tag} UPDATE\r\n").as_bytes()).await?;
        let (s, _) = c.wait_counting(&tag).await?;
        ok_or(s, "UPDATE")?;
        initial.push(t0.elapsed());
        c.timeout = STREAM_POLL;
        let (seen, stop, dropped) = (seen.clone(), stop.clone(), dropped.clone());
        streams.spawn(async move {
            loop {
                match c.line().await {
                    Ok(line) => {
                        let now = Instant::now();
                        if head(&line.bytes).1 == "MAILBOX"
                            && let Some(name) = third_string(&line.bytes)
                            && let Ok(mut m) = seen.lock()
                        {
                            let e = m.entry(name).or_insert((0, now));
                            e.0 += 1;
                            e.1 = now;
                        }
                    }
                    Err(BenchError::Read(ReadError::Timeout(_))) => {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                    Err(_) => {
                        if !stop.load(Ordering::Relaxed) {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        return;
                    }
                }
            }
        });
    }
    progress.phase("mupdate-fanout: writing");
    let writers = connect_all(spec, spec.clients).await?;
    let budget = Arc::new(spec.budget());
    let per_writer = Duration::from_secs_f64(spec.clients as f64 / spec.rate as f64);
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (ci, mut c) in writers.into_iter().enumerate() {
        let budget = budget.clone();
        let progress = progress.clone();
        let run = spec.run_id.clone();
        set.spawn(async move {
            let mut tick = tokio::time::interval(per_writer);
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let mut acked = Vec::new();
            let mut lat = Samples::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            loop {
                tick.tick().await;
                if !budget.take() {
                    break;
                }
                let name = format!("bench.{run}.f{ci}.{i}");
                i += 1;
                let t0 = Instant::now();
                let r = c.command(&activate(&name)).await.map(|(s, _)| s);
                match tally(r, &mut errors, &progress) {
                    Some(true) => {
                        let now = Instant::now();
                        lat.push(now - t0);
                        acked.push((name.into_bytes(), now));
                        progress.add(1);
                    }
                    Some(false) => {}
                    None => break,
                }
            }
            (acked, lat, errors)
        });
    }
    let mut acked = Vec::new();
    let mut wlat = Samples::new();
    let mut errors = 0;
    while let Some(j) = set.join_next().await {
        let (a, l, e) = j.map_err(|e| BenchError::Protocol(format!("writer task: {e}")))?;
        acked.extend(a);
        wlat.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    progress.phase("mupdate-fanout: waiting for the streams");
    let live = |d: &AtomicU64| {
        spec.streams
            .saturating_sub(d.load(Ordering::Relaxed) as usize)
    };
    let all_seen = |m: &HashMap<Vec<u8>, (usize, Instant)>| {
        let want = live(&dropped);
        acked
            .iter()
            .all(|(n, _)| m.get(n).is_some_and(|e| e.0 >= want))
    };
    let grace_end = Instant::now() + FANOUT_GRACE;
    while Instant::now() < grace_end {
        if seen.lock().map(|m| all_seen(&m)).unwrap_or(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    while streams.join_next().await.is_some() {}
    let mut lat = Samples::new();
    let mut missed = 0u64;
    if let Ok(m) = seen.lock() {
        for (name, ok_at) in &acked {
            match m.get(name) {
                Some((n, last)) if *n >= spec.streams => {
                    lat.push(last.saturating_duration_since(*ok_at));
                }
                _ => missed += 1,
            }
        }
    }
    let dropped = dropped.load(Ordering::Relaxed);
    let n = acked.len() as u64;
    let mut r = result(
        spec,
        vec![
            PhaseResult::new("writes", "writes", n, errors, elapsed, 0, &mut wlat),
            PhaseResult::new(
                "fanout-to-last",
                "writes",
                n - missed.min(n),
                missed,
                elapsed,
                0,
                &mut lat,
            ),
            PhaseResult::new(
                "initial-update",
                "streams",
                spec.streams as u64,
                0,
                initial.total(),
                0,
                &mut initial,
            ),
        ],
    );
    r.notes.push(format!(
        "{} streams, target {} writes/s by {} writers, achieved {:.1} writes/s",
        spec.streams,
        spec.rate,
        spec.clients,
        n as f64 / elapsed.as_secs_f64().max(1e-9)
    ));
    r.notes.push(format!(
        "streams dropped: {dropped}; writes not shown by every stream within {FANOUT_GRACE:?}: {missed}"
    ));
    r.figures.insert("streams".into(), spec.streams as f64);
    r.figures.insert("streams_dropped".into(), dropped as f64);
    r.figures.insert("missed".into(), missed as f64);
    r.ok = dropped == 0 && missed == 0;
    Ok(r)
}

/// `mupdate-list`: ACTIVATE `mailboxes` fresh names (pipelined, [`PIPELINE`] per batch, spread
/// over `clients` connections), then LIST on one connection until the budget is spent (records/s
/// over every record the server returned), then three fresh UPDATE clients each timed from
/// UPDATE sent to the OK ending their initial list.
pub async fn list(spec: &Spec, progress: &Progress) -> Result<BenchResult, BenchError> {
    progress.phase("mupdate-list: populating");
    let clients = connect_all(spec, spec.clients).await?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut set = JoinSet::new();
    for mut c in clients {
        let next = next.clone();
        let progress = progress.clone();
        let (run, total) = (spec.run_id.clone(), spec.mailboxes);
        set.spawn(async move {
            let mut errors = 0u64;
            loop {
                let first = next.fetch_add(PIPELINE as u64, Ordering::Relaxed);
                if first >= total {
                    break;
                }
                let last = (first + PIPELINE as u64).min(total);
                let cmds: Vec<String> = (first..last)
                    .map(|i| activate(&format!("bench.{run}.l.{i}")))
                    .collect();
                match pipeline(&mut c, &cmds).await {
                    Ok(replies) => {
                        for (s, _) in replies {
                            if s != Status::Ok {
                                errors += 1;
                                progress.error();
                            }
                        }
                        progress.add(last - first);
                    }
                    Err(_) => {
                        errors += last - first;
                        break;
                    }
                }
            }
            errors
        });
    }
    let mut pop_errors = 0;
    while let Some(j) = set.join_next().await {
        pop_errors += j.map_err(|e| BenchError::Protocol(format!("populate task: {e}")))?;
    }
    let pop_elapsed = started.elapsed();
    let mut none = Samples::new();
    let populate = PhaseResult::new(
        "populate",
        "mailboxes",
        spec.mailboxes - pop_errors.min(spec.mailboxes),
        pop_errors,
        pop_elapsed,
        0,
        &mut none,
    );
    progress.phase("mupdate-list: LIST");
    let mut c = login(spec).await?;
    let budget = spec.budget();
    let mut lat = Samples::new();
    let mut records = 0u64;
    let mut errors = 0u64;
    let mut lists = 0u64;
    let mut last_count = 0u64;
    let started = Instant::now();
    while budget.take() {
        let tag = c.next_tag();
        let t0 = Instant::now();
        c.send(format!("{tag} LIST\r\n").as_bytes()).await?;
        let (s, n) = c.wait_counting(&tag).await?;
        if s == Status::Ok {
            lat.push(t0.elapsed());
            records += n;
            last_count = n;
            lists += 1;
            progress.add(n);
        } else {
            errors += 1;
            progress.error();
        }
    }
    let list_elapsed = started.elapsed();
    let list_phase = PhaseResult::new(
        "list",
        "records",
        records,
        errors,
        list_elapsed,
        0,
        &mut lat,
    );
    progress.phase("mupdate-list: initial UPDATE");
    let mut initial = Samples::new();
    let mut initial_records = 0;
    for _ in 0..3 {
        let mut c = login(spec).await?;
        let tag = c.next_tag();
        let t0 = Instant::now();
        c.send(format!("{tag} UPDATE\r\n").as_bytes()).await?;
        let (s, n) = c.wait_counting(&tag).await?;
        ok_or(s, "UPDATE")?;
        initial.push(t0.elapsed());
        initial_records = n;
    }
    let mut r = result(
        spec,
        vec![
            populate,
            list_phase,
            PhaseResult::new(
                "initial-update",
                "clients",
                3,
                0,
                initial.total(),
                0,
                &mut initial,
            ),
        ],
    );
    r.notes.push(format!(
        "{lists} LISTs of {last_count} records each (the database may hold more than this run's \
         {} mailboxes); a fresh UPDATE received {initial_records} records before its OK",
        spec.mailboxes
    ));
    r.figures.insert("list_records".into(), last_count as f64);
    r.figures.insert("lists".into(), lists as f64);
    r.ok = pop_errors == 0 && last_count >= spec.mailboxes && lists > 0;
    Ok(r)
}
