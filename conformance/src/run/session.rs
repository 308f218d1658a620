//! The protocol chores around a case's connections: connect (TLS, STARTTLS), read the greeting,
//! log in, and send and read with a record in the transcript. Shared by the executor and the
//! probe.

use std::time::Duration;

use base64::Engine as _;
use tokio::time::Instant;

use super::conn::{Conn, ReadError};
use super::exec::MAX_SKIPPED_LINES;
use super::transcript::{Dir, Transcript};
use super::{Target, TargetInfo, TlsMode};
use crate::scenario::Protocol;
use crate::scenario::oracle::Status;
use crate::wire::frame::Line;
use crate::wire::token::{Spanned, Token, tokenize};
use crate::wire::visible::{visible, visible_capped};

/// Most greeting lines read before giving up on a MUPDATE banner.
pub const MAX_BANNER_LINES: usize = 64;

/// Why a step failed (before it gets its place in the file).
#[derive(Clone, Debug, Default)]
pub struct StepFail {
    pub(crate) connection_lost: bool,
    pub(crate) message: String,
    pub(crate) expected: Option<String>,
    pub(crate) got: Option<String>,
    pub(crate) mismatch: Option<String>,
}

impl StepFail {
    /// The message.
    pub fn message(&self) -> String {
        self.message.clone()
    }

    pub(crate) fn msg(m: impl Into<String>) -> Self {
        StepFail {
            message: m.into(),
            ..StepFail::default()
        }
    }
}

/// One open connection of a case.
pub struct ConnState {
    /// The socket.
    pub conn: Conn,
    /// `$tag`.
    pub tag: Vec<u8>,
    /// The last bytes sent, for "closed after `...`" messages.
    pub last_sent: Vec<u8>,
    /// Its name in the scenario.
    pub name: String,
    /// Set when a write could not complete (the server stopped reading after N bytes): later
    /// failures on this connection say so, and it takes no further writes.
    pub stalled: Option<String>,
}

fn read_fail(cs: &ConnState, e: &ReadError) -> StepFail {
    let after = if cs.last_sent.is_empty() {
        String::new()
    } else {
        format!(
            " after `{}`",
            visible_capped(
                cs.last_sent.strip_suffix(b"\r\n").unwrap_or(&cs.last_sent),
                120
            )
        )
    };
    let partial = cs.conn.partial();
    let got =
        (!partial.is_empty()).then(|| format!("incomplete: {}", visible_capped(partial, 400)));
    let stalled = cs
        .stalled
        .as_ref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    StepFail {
        connection_lost: matches!(e, ReadError::Closed | ReadError::Io(_)),
        message: format!("{e}{after}{stalled}"),
        got,
        ..StepFail::default()
    }
}

/// Send bytes and record them.
pub async fn send(
    cs: &mut ConnState,
    tr: &mut Transcript,
    bytes: &[u8],
    deadline: Instant,
) -> Result<(), StepFail> {
    send_shown(cs, tr, bytes, bytes, deadline).await
}

/// Send `bytes` but record `shown` (credentials never reach transcripts, reports or bundles).
pub async fn send_shown(
    cs: &mut ConnState,
    tr: &mut Transcript,
    bytes: &[u8],
    shown: &[u8],
    deadline: Instant,
) -> Result<(), StepFail> {
    if let Some(s) = &cs.stalled {
        return Err(StepFail::msg(format!("cannot send on {}: {s}", cs.name)));
    }
    tr.push(&cs.name, Dir::Sent, shown);
    let r = cs.conn.send(bytes, deadline).await;
    cs.last_sent = bytes.to_vec();
    match r {
        Ok(()) => Ok(()),
        // Not a failure by itself: the scenario judges what the server did instead (an answer,
        // a close, silence); the expectations that follow report it.
        Err(e @ ReadError::Stalled { .. }) => {
            tr.note(&cs.name, &e.to_string());
            cs.stalled = Some(e.to_string());
            Ok(())
        }
        Err(e) => Err(read_fail(cs, &e)),
    }
}

/// Read one logical line and record it.
pub async fn read(
    cs: &mut ConnState,
    tr: &mut Transcript,
    deadline: Instant,
    budget: Duration,
) -> Result<Line, StepFail> {
    match cs.conn.read_line(deadline, budget).await {
        Ok(line) => {
            let mut shown = line.bytes.clone();
            shown.extend_from_slice(if line.bare_lf { b"\n" } else { b"\r\n" });
            tr.push(&cs.name, Dir::Received, &shown);
            Ok(line)
        }
        Err(e) => {
            tr.note(&cs.name, &e.to_string());
            Err(read_fail(cs, &e))
        }
    }
}

pub(crate) fn first_two(tokens: &[Spanned]) -> (Option<&[u8]>, Option<&[u8]>) {
    let atom = |i: usize| match tokens.get(i).map(|t| &t.token) {
        Some(Token::Atom(a)) => Some(a.as_slice()),
        _ => None,
    };
    (atom(0), atom(1))
}

/// Read the greeting: MUPDATE up to `* OK MUPDATE`, IMAP one `* OK`/`* PREAUTH` line.
pub async fn greeting(
    cs: &mut ConnState,
    tr: &mut Transcript,
    protocol: Protocol,
    deadline: Instant,
    budget: Duration,
) -> Result<Vec<Line>, StepFail> {
    let mut lines = Vec::new();
    for _ in 0..MAX_BANNER_LINES {
        let line = read(cs, tr, deadline, budget).await?;
        let toks = tokenize(&line.bytes);
        let (a, b) = first_two(&toks);
        let word3 = match toks.get(2).map(|t| &t.token) {
            Some(Token::Atom(w)) => Some(w.as_slice()),
            _ => None,
        };
        let is_ok = a == Some(b"*") && b.is_some_and(|w| w.eq_ignore_ascii_case(b"OK"));
        let is_preauth = a == Some(b"*") && b.is_some_and(|w| w.eq_ignore_ascii_case(b"PREAUTH"));
        let done = match protocol {
            Protocol::Mupdate => is_ok && word3.is_some_and(|w| w.eq_ignore_ascii_case(b"MUPDATE")),
            Protocol::Imap => {
                if !(is_ok || is_preauth) {
                    return Err(StepFail {
                        message: "the IMAP greeting is not `* OK` or `* PREAUTH`".into(),
                        expected: Some("* OK ...".into()),
                        got: Some(visible(&line.bytes)),
                        ..StepFail::default()
                    });
                }
                true
            }
        };
        let bye = b.is_some_and(|w| w.eq_ignore_ascii_case(b"BYE"));
        lines.push(line);
        if done {
            return Ok(lines);
        }
        if bye {
            return Err(StepFail::msg("the server said BYE in its greeting"));
        }
    }
    Err(StepFail::msg(format!(
        "no `* OK MUPDATE` line within {MAX_BANNER_LINES} banner lines"
    )))
}

/// Read until the line tagged `tag`; returns it (other lines are skipped and recorded).
pub async fn tagged(
    cs: &mut ConnState,
    tr: &mut Transcript,
    tag: &[u8],
    deadline: Instant,
    budget: Duration,
) -> Result<Line, StepFail> {
    for _ in 0..MAX_SKIPPED_LINES {
        let line = read(cs, tr, deadline, budget).await?;
        let toks = tokenize(&line.bytes);
        if first_two(&toks).0 == Some(tag) {
            return Ok(line);
        }
    }
    Err(StepFail::msg("too many lines"))
}

fn status_of(line: &Line) -> Option<Status> {
    let toks = tokenize(&line.bytes);
    first_two(&toks).1.and_then(Status::from_word)
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Per-run counter of the runner's own tags (`cfN`).
#[derive(Debug, Default)]
pub struct Tags(u32);

impl Tags {
    /// The next tag.
    pub fn fresh(&mut self) -> Vec<u8> {
        self.0 += 1;
        format!("cf{}", self.0).into_bytes()
    }
}

/// Log in with the protocol's usual command (README 3.1), or with GSSAPI when the run uses
/// `--sasl-mech GSSAPI` ([`super::gssapi::login`]; `pass` is then unused).
#[allow(clippy::too_many_arguments)]
pub async fn login(
    cs: &mut ConnState,
    tr: &mut Transcript,
    tags: &mut Tags,
    protocol: Protocol,
    info: Option<&TargetInfo>,
    (user, pass): (&str, &str),
    deadline: Instant,
    budget: Duration,
) -> Result<(), StepFail> {
    if let Some(info) = info.filter(|i| !i.login.is_plain()) {
        return super::gssapi::login(cs, tr, tags, protocol, info, user, deadline, budget).await;
    }
    let tag = tags.fresh();
    let t = String::from_utf8_lossy(&tag).into_owned();
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
    let login_disabled = info.is_some_and(|i| i.caps.contains("LOGINDISABLED"));
    match protocol {
        Protocol::Mupdate => {
            let cmd = format!("{t} AUTHENTICATE \"PLAIN\" \"{b64}\"\r\n");
            let shown = format!("{t} AUTHENTICATE \"PLAIN\" <credentials of {user}>\r\n");
            send_shown(cs, tr, cmd.as_bytes(), shown.as_bytes(), deadline).await?;
        }
        Protocol::Imap if login_disabled => {
            send(
                cs,
                tr,
                format!("{t} AUTHENTICATE PLAIN\r\n").as_bytes(),
                deadline,
            )
            .await?;
            let cont = read(cs, tr, deadline, budget).await?;
            if !cont.bytes.starts_with(b"+") {
                return Err(StepFail {
                    message: format!(
                        "login as {user} failed: no continuation for AUTHENTICATE PLAIN"
                    ),
                    got: Some(visible(&cont.bytes)),
                    ..StepFail::default()
                });
            }
            let shown = format!("<credentials of {user}>\r\n");
            send_shown(
                cs,
                tr,
                format!("{b64}\r\n").as_bytes(),
                shown.as_bytes(),
                deadline,
            )
            .await?;
        }
        Protocol::Imap => {
            let cmd = format!("{t} LOGIN {} {}\r\n", quote(user), quote(pass));
            let shown = format!("{t} LOGIN {} <password>\r\n", quote(user));
            send_shown(cs, tr, cmd.as_bytes(), shown.as_bytes(), deadline).await?;
        }
    }
    let reply = tagged(cs, tr, &tag, deadline, budget).await?;
    if status_of(&reply) != Some(Status::Ok) {
        return Err(StepFail {
            message: format!("login as {user} failed (check --user/--password)"),
            expected: Some(format!("{t} OK ...")),
            got: Some(visible(&reply.bytes)),
            ..StepFail::default()
        });
    }
    Ok(())
}

/// The runner's STARTTLS: command, OK, handshake, and for MUPDATE the repeated banner.
pub async fn starttls(
    cs: &mut ConnState,
    tr: &mut Transcript,
    tags: &mut Tags,
    protocol: Protocol,
    target: &Target,
    deadline: Instant,
    budget: Duration,
) -> Result<Vec<Line>, StepFail> {
    let tag = tags.fresh();
    let mut cmd = tag.clone();
    cmd.extend_from_slice(b" STARTTLS\r\n");
    send(cs, tr, &cmd, deadline).await?;
    let reply = tagged(cs, tr, &tag, deadline, budget).await?;
    if status_of(&reply) != Some(Status::Ok) {
        return Err(StepFail {
            message: "STARTTLS refused".into(),
            expected: Some(format!("{} OK ...", String::from_utf8_lossy(&tag))),
            got: Some(visible(&reply.bytes)),
            ..StepFail::default()
        });
    }
    tls_handshake(cs, tr, target, deadline).await?;
    match protocol {
        Protocol::Mupdate => greeting(cs, tr, protocol, deadline, budget).await,
        Protocol::Imap => Ok(Vec::new()),
    }
}

pub(crate) async fn tls_handshake(
    cs: &mut ConnState,
    tr: &mut Transcript,
    target: &Target,
    deadline: Instant,
) -> Result<(), StepFail> {
    tr.note(&cs.name, "TLS handshake");
    cs.conn
        .start_tls(target.tls.clone(), target.server_name.clone(), deadline)
        .await
        .map_err(|e| StepFail::msg(e.to_string()))
}

/// Open a connection the way the run's TLS mode says, reading the greeting unless `raw`.
#[allow(clippy::too_many_arguments)]
pub async fn open(
    name: &str,
    target: &Target,
    protocol: Protocol,
    raw: bool,
    tr: &mut Transcript,
    tags: &mut Tags,
    deadline: Instant,
    budget: Duration,
) -> Result<(ConnState, Vec<Line>), StepFail> {
    tr.note(name, &format!("connect to {}", target.addr));
    let conn = Conn::connect(&target.addr, deadline)
        .await
        .map_err(|e| StepFail {
            connection_lost: true,
            ..StepFail::msg(e.to_string())
        })?;
    let mut cs = ConnState {
        conn,
        tag: Vec::new(),
        last_sent: Vec::new(),
        name: name.to_string(),
        stalled: None,
    };
    if target.tls_mode == TlsMode::Implicit {
        tls_handshake(&mut cs, tr, target, deadline).await?;
    }
    if raw {
        return Ok((cs, Vec::new()));
    }
    let mut lines = greeting(&mut cs, tr, protocol, deadline, budget).await?;
    if target.tls_mode == TlsMode::StartTls {
        let again = starttls(&mut cs, tr, tags, protocol, target, deadline, budget).await?;
        if !again.is_empty() {
            lines = again;
        }
    }
    Ok((cs, lines))
}
