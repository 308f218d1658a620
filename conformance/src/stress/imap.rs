//! The IMAP workload: W writers MULTIAPPEND batches of distinct sizes into one fresh mailbox
//! while O observers with it SELECTed poll with NOOP and record every EXISTS. Checked: every
//! EXISTS is the base plus a sum of whole batches sent by then (RFC 3502 section 6: a
//! MULTIAPPEND is atomic), each batch's APPENDUID (RFC 4315) is as many contiguous UIDs as
//! messages, disjoint from the others, and the final STATUS MESSAGES is the base plus the
//! acknowledged batches (plus possibly some of those never answered).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use murder_model::multiappend::parse_uid_set;
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Spec;
use super::Violation;
use super::history::{Status, ms, us_since};
use crate::bench::client::{Client, ok_or, quote};
use crate::bench::imap::{append_reply, message};
use crate::bench::{BenchError, Budget};
use crate::run::conn::ReadError;
use crate::wire::token::{Token, tokenize};
use crate::wire::visible::visible;

/// Size in bytes of every appended message.
pub const MESSAGE_BYTES: usize = 200;
/// The smallest batch (so a lone visible message of a batch is never a whole batch).
pub const MIN_BATCH: usize = 2;
/// Batches of a run when `--ops` does not say (sizes MIN_BATCH .. MIN_BATCH + this, shuffled).
pub const DEFAULT_BATCHES: u64 = 40;
/// How long an observer's read may wait before it looks at the stop flag.
pub const OBSERVER_POLL: Duration = Duration::from_millis(200);

/// One MULTIAPPEND command.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Writer number.
    pub client: usize,
    /// Messages in it.
    pub size: usize,
    /// Microseconds since the start when it was sent.
    pub invoke_us: u64,
    /// When its tagged status arrived (`None`: never).
    pub complete_us: Option<u64>,
    /// Its status (`None`: never answered).
    pub status: Option<Status>,
    /// The tagged status line (or the error).
    pub reply: Vec<u8>,
}

/// One EXISTS an observer saw.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Observer number.
    pub observer: usize,
    /// Microseconds since the start when the line arrived.
    pub at_us: u64,
    /// The count.
    pub exists: u64,
}

/// What one IMAP run recorded.
#[derive(Clone, Debug, Default)]
pub struct ImapRun {
    /// Messages in the mailbox before the run (STATUS).
    pub base: u64,
    /// Every batch.
    pub batches: Vec<Batch>,
    /// Every EXISTS seen.
    pub observations: Vec<Observation>,
    /// STATUS MESSAGES after every writer stopped.
    pub final_messages: Option<u64>,
    /// The server advertised UIDPLUS (APPENDUID is then required on OK).
    pub uidplus: bool,
    /// Wall-clock time of the workload.
    pub elapsed: Duration,
}

async fn login(spec: &Spec) -> Result<Client, BenchError> {
    let mut c = Client::connect(&spec.addr, spec.timeout).await?;
    c.imap_login(&spec.user, &spec.password).await?;
    Ok(c)
}

/// `MESSAGES n` out of a STATUS reply's lines.
fn status_messages(lines: &[crate::wire::frame::Line]) -> Option<u64> {
    lines.iter().find_map(|l| {
        let text = String::from_utf8_lossy(&l.bytes).to_ascii_uppercase();
        text.split("MESSAGES ")
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

async fn status(c: &mut Client, mailbox: &str) -> Result<Option<u64>, BenchError> {
    let (s, lines) = c
        .command(&format!("STATUS {} (MESSAGES)", quote(mailbox)))
        .await?;
    ok_or(s, "STATUS")?;
    Ok(status_messages(&lines))
}

/// `* N EXISTS`.
fn exists_of(line: &[u8]) -> Option<u64> {
    let toks = tokenize(line);
    let atom = |i: usize| match toks.get(i).map(|t| &t.token) {
        Some(Token::Atom(a)) => Some(a.as_slice()),
        _ => None,
    };
    if atom(0)? != b"*" || !atom(2)?.eq_ignore_ascii_case(b"EXISTS") {
        return None;
    }
    std::str::from_utf8(atom(1)?).ok()?.parse().ok()
}

/// Poll with NOOP until `stop`, recording every EXISTS; what was seen is kept even when the
/// connection fails.
async fn observe(
    mut c: Client,
    observer: usize,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Observation> {
    let mut seen = Vec::new();
    c.timeout = OBSERVER_POLL;
    'poll: while !stop.load(Ordering::Relaxed) {
        let tag = c.next_tag();
        if c.send(format!("{tag} NOOP\r\n").as_bytes()).await.is_err() {
            break;
        }
        loop {
            let line = match c.line().await {
                Ok(l) => l,
                Err(BenchError::Read(ReadError::Timeout(_))) if !stop.load(Ordering::Relaxed) => {
                    continue;
                }
                Err(_) => break 'poll,
            };
            if let Some(exists) = exists_of(&line.bytes) {
                seen.push(Observation {
                    observer,
                    at_us: us_since(start),
                    exists,
                });
            }
            if line.bytes.starts_with(tag.as_bytes()) {
                break;
            }
        }
    }
    seen
}

/// Run the workload.
pub async fn run(spec: &Spec) -> Result<ImapRun, BenchError> {
    let mailbox = format!("stress-{}", spec.run_id);
    let mut admin = login(spec).await?;
    if !admin.has_cap("MULTIAPPEND") {
        return Err(BenchError::Protocol(
            "the server does not advertise MULTIAPPEND".into(),
        ));
    }
    let uidplus = admin.has_cap("UIDPLUS");
    let literal_plus = admin.has_cap("LITERAL+");
    let (s, _) = admin
        .command(&format!("CREATE {}", quote(&mailbox)))
        .await?;
    ok_or(s, "CREATE")?;
    let base = status(&mut admin, &mailbox).await?.unwrap_or(0);
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut observers = JoinSet::new();
    for o in 0..spec.observers {
        let mut c = login(spec).await?;
        let (s, _) = c.command(&format!("SELECT {}", quote(&mailbox))).await?;
        ok_or(s, "SELECT")?;
        observers.spawn(observe(c, o, start, stop.clone()));
    }
    let batches = spec.ops.unwrap_or(DEFAULT_BATCHES);
    let mut sizes: Vec<usize> = (0..usize::try_from(batches).unwrap_or(usize::MAX))
        .map(|i| MIN_BATCH + i)
        .collect();
    sizes.shuffle(&mut StdRng::seed_from_u64(spec.seed));
    let sizes = Arc::new(Mutex::new(sizes));
    let budget = Arc::new(Budget::new(spec.duration, spec.ops));
    let mut writers = JoinSet::new();
    for w in 0..spec.clients {
        let mut c = login(spec).await?;
        let (sizes, budget, mailbox) = (sizes.clone(), budget.clone(), mailbox.clone());
        writers.spawn(async move {
            let mut out = Vec::new();
            while budget.take() {
                let Some(size) = sizes.lock().ok().and_then(|mut s| s.pop()) else {
                    break;
                };
                let msgs: Vec<Arc<Vec<u8>>> = (0..size)
                    .map(|i| Arc::new(message(MESSAGE_BYTES, (size * 1000 + i) as u64)))
                    .collect();
                let invoke_us = us_since(start);
                let r = append_reply(&mut c, &mailbox, &msgs, literal_plus).await;
                let complete_us = Some(us_since(start));
                match r {
                    Ok((s, line)) => out.push(Batch {
                        client: w,
                        size,
                        invoke_us,
                        complete_us,
                        status: Some(s),
                        reply: line,
                    }),
                    Err(e) => {
                        out.push(Batch {
                            client: w,
                            size,
                            invoke_us,
                            complete_us: None,
                            status: None,
                            reply: format!("(no reply: {e})").into_bytes(),
                        });
                        break;
                    }
                }
            }
            out
        });
    }
    let mut all = Vec::new();
    while let Some(j) = writers.join_next().await {
        all.extend(j.map_err(|e| BenchError::Protocol(format!("writer task: {e}")))?);
    }
    let elapsed = start.elapsed();
    // A server that stopped answering still gets its EXISTS and APPENDUIDs checked.
    let final_messages = status(&mut admin, &mailbox).await.ok().flatten();
    stop.store(true, Ordering::Relaxed);
    let mut observations = Vec::new();
    while let Some(j) = observers.join_next().await {
        if let Ok(seen) = j {
            observations.extend(seen);
        }
    }
    let _ = admin.command(&format!("DELETE {}", quote(&mailbox))).await;
    all.sort_by_key(|b| (b.invoke_us, b.client));
    observations.sort_by_key(|o| (o.at_us, o.observer));
    Ok(ImapRun {
        base,
        batches: all,
        observations,
        final_messages,
        uidplus,
        elapsed,
    })
}

/// Sums reachable with a subset of some items: a bitset over 0..=max.
struct SubsetSums(Vec<u64>);

impl SubsetSums {
    fn new(max: usize) -> SubsetSums {
        let mut v = vec![0u64; max / 64 + 1];
        if let Some(w) = v.first_mut() {
            *w = 1;
        }
        SubsetSums(v)
    }

    /// Add an item of `size`: reachable ∪ (reachable + size).
    fn add(&mut self, size: usize) {
        let (words, bits) = (size / 64, size % 64);
        for i in (0..self.0.len()).rev() {
            let lo = i
                .checked_sub(words)
                .and_then(|j| self.0.get(j))
                .copied()
                .unwrap_or(0);
            let hi = if bits == 0 {
                0
            } else {
                i.checked_sub(words + 1)
                    .and_then(|j| self.0.get(j))
                    .map_or(0, |w| w >> (64 - bits))
            };
            if let Some(w) = self.0.get_mut(i) {
                *w |= (lo << bits) | hi;
            }
        }
    }

    fn has(&self, sum: u64) -> bool {
        let Ok(s) = usize::try_from(sum) else {
            return false;
        };
        self.0.get(s / 64).is_some_and(|w| w >> (s % 64) & 1 == 1)
    }
}

/// `[APPENDUID validity uids]` of a tagged OK line.
fn appenduid(line: &[u8]) -> Option<(u32, Vec<u32>)> {
    let toks = tokenize(line);
    toks.iter().find_map(|t| match &t.token {
        Token::Code(inner) => {
            let atom = |i: usize| match inner.get(i).map(|t| &t.token) {
                Some(Token::Atom(a)) => Some(String::from_utf8_lossy(a).into_owned()),
                _ => None,
            };
            if !atom(0)?.eq_ignore_ascii_case("APPENDUID") {
                return None;
            }
            Some((atom(1)?.parse().ok()?, parse_uid_set(&atom(2)?)?))
        }
        _ => None,
    })
}

fn describe(b: &Batch) -> String {
    format!(
        "  writer w{} batch of {} invoked {} completed {}: S: {}\n",
        b.client,
        b.size,
        ms(b.invoke_us),
        b.complete_us.map_or_else(|| "never".into(), ms),
        visible(&b.reply)
    )
}

/// Check a recorded IMAP run.
pub fn check(run: &ImapRun) -> Vec<Violation> {
    let mut out = Vec::new();
    let total: usize = run.batches.iter().map(|b| b.size).sum();
    // EXISTS: walk batches and observations in time order.
    let mut sums = SubsetSums::new(total);
    let mut next = 0;
    for o in &run.observations {
        while let Some(b) = run.batches.get(next)
            && b.invoke_us <= o.at_us
        {
            sums.add(b.size);
            next += 1;
        }
        let ok = o
            .exists
            .checked_sub(run.base)
            .is_some_and(|extra| sums.has(extra));
        if !ok {
            let mut detail = String::new();
            for b in run.batches.iter().take(next) {
                detail.push_str(&describe(b));
            }
            out.push(Violation {
                kind: "multiappend-not-atomic".into(),
                summary: format!(
                    "observer o{} saw {} EXISTS at {}: not the base {} plus a sum of whole \
                     batches sent by then (RFC 3502 6: all messages of a MULTIAPPEND or none)",
                    o.observer,
                    o.exists,
                    ms(o.at_us),
                    run.base
                ),
                detail,
            });
            break;
        }
    }
    // APPENDUID.
    let mut used: BTreeSet<u32> = BTreeSet::new();
    let mut validity = None;
    for b in &run.batches {
        if b.status != Some(Status::Ok) {
            continue;
        }
        let Some((v, uids)) = appenduid(&b.reply) else {
            if run.uidplus {
                out.push(Violation {
                    kind: "appenduid-missing".into(),
                    summary: "an OK MULTIAPPEND lacks [APPENDUID] although UIDPLUS is \
                              advertised (RFC 4315 3)"
                        .into(),
                    detail: describe(b),
                });
            }
            continue;
        };
        let contiguous = uids.windows(2).all(|w| match w {
            [a, b] => a.checked_add(1) == Some(*b),
            _ => true,
        });
        let fresh = uids.iter().all(|u| !used.contains(u));
        let same = validity.is_none_or(|x| x == v);
        if uids.len() != b.size || !contiguous || !fresh || !same {
            out.push(Violation {
                kind: "appenduid".into(),
                summary: format!(
                    "APPENDUID of a batch of {}: {} UIDs, contiguous {contiguous}, disjoint \
                     from earlier batches {fresh}, same UIDVALIDITY {same} (RFC 4315 3)",
                    b.size,
                    uids.len()
                ),
                detail: describe(b),
            });
        }
        used.extend(uids);
        validity = Some(v);
    }
    // Final count.
    if let Some(m) = run.final_messages {
        let acked: u64 = run
            .batches
            .iter()
            .filter(|b| b.status == Some(Status::Ok))
            .map(|b| b.size as u64)
            .sum();
        let mut pending = SubsetSums::new(total);
        for b in run.batches.iter().filter(|b| b.status.is_none()) {
            pending.add(b.size);
        }
        let ok = m
            .checked_sub(run.base + acked)
            .is_some_and(|extra| pending.has(extra));
        if !ok {
            out.push(Violation {
                kind: "multiappend-count".into(),
                summary: format!(
                    "STATUS MESSAGES is {m} after the writers stopped; expected base {} + {acked} \
                     acknowledged messages (plus whole unanswered batches)",
                    run.base
                ),
                detail: String::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_sums() {
        let mut s = SubsetSums::new(300);
        for x in [3, 70, 130] {
            s.add(x);
        }
        for ok in [0, 3, 70, 73, 130, 133, 200, 203] {
            assert!(s.has(ok), "{ok}");
        }
        for bad in [1, 2, 4, 69, 71, 134, 204, 1000] {
            assert!(!s.has(bad), "{bad}");
        }
    }

    #[test]
    fn parses_appenduid_and_exists() {
        assert_eq!(
            appenduid(b"B4 OK [APPENDUID 38505 3955:3957] APPEND completed"),
            Some((38505, vec![3955, 3956, 3957]))
        );
        assert_eq!(exists_of(b"* 23 EXISTS"), Some(23));
        assert_eq!(exists_of(b"* 23 RECENT"), None);
    }

    fn batch(size: usize, t: (u64, u64), reply: &str) -> Batch {
        Batch {
            client: 0,
            size,
            invoke_us: t.0,
            complete_us: Some(t.1),
            status: Some(Status::Ok),
            reply: reply.as_bytes().to_vec(),
        }
    }

    #[test]
    fn partial_batches_and_bad_uids_are_found() {
        let mut run = ImapRun {
            base: 1,
            batches: vec![
                batch(3, (0, 10), "B1 OK [APPENDUID 7 2:4] done"),
                batch(2, (5, 20), "B2 OK [APPENDUID 7 5:6] done"),
            ],
            observations: vec![Observation {
                observer: 0,
                at_us: 30,
                exists: 6,
            }],
            final_messages: Some(6),
            uidplus: true,
            elapsed: Duration::ZERO,
        };
        assert!(check(&run).is_empty(), "{:?}", check(&run));
        run.observations.push(Observation {
            observer: 1,
            at_us: 40,
            exists: 2,
        });
        run.batches[1].reply = b"B2 OK [APPENDUID 7 4,6] done".to_vec();
        let kinds: Vec<String> = check(&run).into_iter().map(|v| v.kind).collect();
        assert_eq!(kinds, vec!["multiappend-not-atomic", "appenduid"]);
    }
}
