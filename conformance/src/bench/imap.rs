//! The IMAP workload: MULTIAPPEND (RFC 3502) of batches of small messages, of large messages,
//! and the same small messages as single APPENDs for comparison.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{Client, Status, head, ok_or, quote};
use super::progress::Progress;
use super::stats::Samples;
use super::{BenchError, BenchResult, PhaseResult, Spec, tally};

/// Pieces of an APPEND smaller than this are coalesced into one socket write.
pub const COALESCE: usize = 256 * 1024;

/// An RFC 5322 message of exactly `size` bytes (at least the headers): CRLF lines of 76 `x`.
pub fn message(size: usize, n: u64) -> Vec<u8> {
    let mut m = format!(
        "From: bench@bench.invalid\r\nTo: test@bench.invalid\r\nSubject: bench {n}\r\n\
         Message-ID: <{n}.bench@bench.invalid>\r\n\r\n"
    )
    .into_bytes();
    while m.len() + 78 <= size {
        m.extend_from_slice(&[b'x'; 76]);
        m.extend_from_slice(b"\r\n");
    }
    while m.len() < size {
        m.push(b'y');
    }
    m
}

/// One APPEND of `msgs` (MULTIAPPEND when more than one): non-synchronizing literals when
/// `literal_plus`, else each literal waits for the server's `+`. Returns the tagged status.
pub async fn append(
    c: &mut Client,
    mailbox: &str,
    msgs: &[Arc<Vec<u8>>],
    literal_plus: bool,
) -> Result<Status, BenchError> {
    Ok(append_reply(c, mailbox, msgs, literal_plus).await?.0)
}

/// Like [`append`], also returning the tagged status line (for its `[APPENDUID ...]` code).
pub async fn append_reply(
    c: &mut Client,
    mailbox: &str,
    msgs: &[Arc<Vec<u8>>],
    literal_plus: bool,
) -> Result<(Status, Vec<u8>), BenchError> {
    let tag = c.next_tag();
    let mut buf: Vec<u8> = format!("{tag} APPEND {}", quote(mailbox)).into_bytes();
    for m in msgs {
        let plus = if literal_plus { "+" } else { "" };
        buf.extend_from_slice(format!(" {{{}{plus}}}\r\n", m.len()).as_bytes());
        if !literal_plus {
            c.send(&buf).await?;
            buf.clear();
            loop {
                let line = c.line().await?;
                if line.bytes.starts_with(b"+") {
                    break;
                }
                let (t, word) = head(&line.bytes);
                if t == tag.as_bytes() && matches!(word.as_str(), "NO" | "BAD" | "OK") {
                    let s = if word == "OK" { Status::Ok } else { Status::No };
                    return Ok((s, line.bytes));
                }
            }
        }
        if m.len() >= COALESCE {
            if !buf.is_empty() {
                c.send(&buf).await?;
                buf.clear();
            }
            c.send(m).await?;
        } else {
            buf.extend_from_slice(m);
            if buf.len() >= COALESCE {
                c.send(&buf).await?;
                buf.clear();
            }
        }
    }
    buf.extend_from_slice(b"\r\n");
    c.send(&buf).await?;
    c.wait_status_line(&tag).await
}

struct Phase {
    name: &'static str,
    per_command: usize,
    size: usize,
}

async fn run_phase(
    spec: &Spec,
    progress: &Progress,
    clients: Vec<(Client, String)>,
    phase: &Phase,
) -> Result<(PhaseResult, Vec<(Client, String)>), BenchError> {
    progress.phase(&format!("imap-multiappend: {}", phase.name));
    let msgs: Arc<Vec<Arc<Vec<u8>>>> = Arc::new(
        (0..phase.per_command as u64)
            .map(|i| Arc::new(message(phase.size, i)))
            .collect(),
    );
    let budget = Arc::new(spec.budget());
    let started = Instant::now();
    let mut set = JoinSet::new();
    for (mut c, mailbox) in clients {
        let (budget, msgs, progress) = (budget.clone(), msgs.clone(), progress.clone());
        set.spawn(async move {
            let lp = c.has_cap("LITERAL+");
            let mut lat = Samples::new();
            let (mut done, mut errors) = (0u64, 0u64);
            let mut alive = true;
            while budget.take() {
                let t0 = Instant::now();
                let r = append(&mut c, &mailbox, &msgs, lp).await;
                match tally(r, &mut errors, &progress) {
                    Some(true) => {
                        lat.push(t0.elapsed());
                        done += msgs.len() as u64;
                        progress.add(msgs.len() as u64);
                    }
                    Some(false) => {}
                    None => {
                        alive = false;
                        break;
                    }
                }
            }
            (c, mailbox, lat, done, errors, alive)
        });
    }
    let mut lat = Samples::new();
    let (mut done, mut errors) = (0, 0);
    let mut back = Vec::new();
    while let Some(j) = set.join_next().await {
        let (c, mailbox, l, d, e, alive) =
            j.map_err(|e| BenchError::Protocol(format!("append task: {e}")))?;
        lat.extend(l);
        done += d;
        errors += e;
        if alive {
            back.push((c, mailbox));
        }
    }
    let elapsed = started.elapsed();
    let bytes = done * phase.size as u64;
    let r = PhaseResult::new(phase.name, "msgs", done, errors, elapsed, bytes, &mut lat);
    if back.is_empty() {
        return Err(BenchError::Protocol(format!(
            "{}: every connection failed",
            phase.name
        )));
    }
    Ok((r, back))
}

/// `imap-multiappend`: `clients` connections, each appending to its own fresh mailbox. Phases,
/// each with its own budget (one operation = one APPEND command): `multiappend-small` (`batch`
/// messages of `msg_size` bytes per command), `multiappend-large` (`large_count` messages of
/// `large_size`), `append-single` (one `msg_size` message per command). Latency is per command.
pub async fn multiappend(spec: &Spec, progress: &Progress) -> Result<BenchResult, BenchError> {
    let mut clients = Vec::new();
    let mut literal_plus = true;
    for ci in 0..spec.clients {
        let mut c = Client::connect(&spec.addr, spec.timeout).await?;
        c.imap_login(&spec.user, &spec.password).await?;
        let mailbox = format!("bench-{}-{ci}", spec.run_id);
        let (s, _) = c.command(&format!("CREATE {}", quote(&mailbox))).await?;
        ok_or(s, "CREATE")?;
        literal_plus &= c.has_cap("LITERAL+");
        if !c.has_cap("MULTIAPPEND") {
            return Err(BenchError::Protocol(
                "the server does not advertise MULTIAPPEND".into(),
            ));
        }
        clients.push((c, mailbox));
    }
    let phases = [
        Phase {
            name: "multiappend-small",
            per_command: spec.batch,
            size: spec.msg_size,
        },
        Phase {
            name: "multiappend-large",
            per_command: spec.large_count,
            size: spec.large_size,
        },
        Phase {
            name: "append-single",
            per_command: 1,
            size: spec.msg_size,
        },
    ];
    let mut results = Vec::new();
    for p in &phases {
        let (r, back) = run_phase(spec, progress, clients, p).await?;
        results.push(r);
        clients = back;
    }
    let mut total = 0u64;
    for (c, mailbox) in &mut clients {
        let (s, lines) = c
            .command(&format!("STATUS {} (MESSAGES)", quote(mailbox)))
            .await?;
        ok_or(s, "STATUS")?;
        for l in lines {
            let text = String::from_utf8_lossy(&l.bytes).to_ascii_uppercase();
            if let Some(v) = text.split("MESSAGES ").nth(1) {
                total += v
                    .trim_end_matches(')')
                    .trim()
                    .parse::<u64>()
                    .unwrap_or_default();
            }
        }
    }
    let appended: u64 = results.iter().map(|p| p.count).sum();
    // The run's mailboxes hold gigabytes after a few runs: remove them (a server that refuses
    // is reported, not failed: the figures above are already judged).
    let mut not_deleted = Vec::new();
    for (c, mailbox) in &mut clients {
        match c.command(&format!("DELETE {}", quote(mailbox))).await {
            Ok((Status::Ok, _)) => {}
            _ => not_deleted.push(mailbox.clone()),
        }
    }
    let cleanup = if not_deleted.is_empty() {
        "the bench mailboxes were deleted afterwards".to_string()
    } else {
        format!("DELETE refused, left behind: {}", not_deleted.join(" "))
    };
    let mut r = BenchResult {
        workload: spec.workload,
        target: spec.addr.clone(),
        clients: spec.clients,
        phases: results,
        notes: vec![
            format!(
                "{} literals; batch {} x {} B, large {} x {} B",
                if literal_plus {
                    "LITERAL+ (non-synchronizing)"
                } else {
                    "synchronizing"
                },
                spec.batch,
                spec.msg_size,
                spec.large_count,
                spec.large_size
            ),
            format!("STATUS MESSAGES over the bench mailboxes: {total} (acknowledged {appended})"),
            cleanup,
        ],
        figures: BTreeMap::new(),
        rss: None,
        ok: total == appended,
    };
    r.figures.insert("acknowledged".into(), appended as f64);
    r.figures.insert("status_messages".into(), total as f64);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_exact_size() {
        for size in [200, 2048, 10_000, 10 * 1024 * 1024] {
            let m = message(size, 7);
            assert_eq!(m.len(), size);
            assert!(m.windows(4).any(|w| w == b"\r\n\r\n"));
        }
    }
}
