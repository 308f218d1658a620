//! The executor of one case: runs `[setup]`, `[test]` and (always) `[cleanup]`, and explains the
//! first failure with the transcript, the expectation and the first mismatch.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use murder_model::{MailboxEntry, Record};
use tokio::time::Instant;

use super::conn::ReadError;
use super::session::{
    ConnState, StepFail, Tags, first_two, login, open, read, send, starttls, tls_handshake,
};
use super::transcript::{Dir, Transcript};
use super::{Target, TargetInfo};
use crate::scenario::names::{Credentials, case_env, name_prefix};
use crate::scenario::oracle::{Sim, Status};
use crate::scenario::pattern::{Pattern, match_line};
use crate::scenario::template::{Env, Template};
use crate::scenario::validate::{sim_for, tag_of};
use crate::scenario::{Need, OpenMode, Protocol, Scenario, Step, StepKind};
use crate::wire::frame::Line;
use crate::wire::token::{Spanned, Token, tokenize};
use crate::wire::visible::visible;

/// Most lines `collect` and `<<` read before giving up (a runaway server).
pub const MAX_SKIPPED_LINES: usize = 100_000;

/// The first failure of a case, with everything needed to understand it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// `setup` or `test`.
    pub phase: String,
    /// Line of the failing step in the scenario file.
    pub line: usize,
    /// The step's text.
    pub step: String,
    /// What went wrong.
    pub message: String,
    /// The expectation, when a line was judged.
    pub expected: Option<String>,
    /// The line received, made visible.
    pub got: Option<String>,
    /// The first difference between the two.
    pub mismatch: Option<String>,
    /// The connection was closed or reset (or could not be made): in a parallel run this may be
    /// another case crashing the server, so the suite retries such a case alone.
    #[serde(default)]
    pub connection_lost: bool,
}

/// The result of executing one case.
#[derive(Debug)]
pub struct Executed {
    /// The first failure, if any.
    pub failure: Option<Failure>,
    /// Cleanup problems (never change the grade).
    pub warnings: Vec<String>,
    /// Everything said.
    pub transcript: Transcript,
}

fn get_cs<'m>(
    conns: &'m mut HashMap<String, ConnState>,
    name: &str,
) -> Result<&'m mut ConnState, StepFail> {
    conns
        .get_mut(name)
        .ok_or_else(|| StepFail::msg(format!("connection {name} is not open (closed earlier?)")))
}

/// For `unordered`: the captures of pattern i on line j, when it matches.
type MatchTable = Vec<Vec<Option<HashMap<String, Vec<u8>>>>>;

/// Collected lines of `collect` steps.
type Sets = HashMap<String, Vec<Line>>;

struct Exec<'a> {
    sc: &'a Scenario,
    target: &'a Target,
    info: &'a TargetInfo,
    creds: &'a Credentials,
    env: Env,
    conns: HashMap<String, ConnState>,
    /// Connections the server closed (a later `closed` or `or closed` on them passes).
    gone: HashSet<String>,
    /// Connections opened to the master of the slave under test (`open NAME master`).
    on_master: HashSet<String>,
    sets: Sets,
    sim: Option<Sim>,
    tr: Transcript,
    tags: Tags,
    prefix: String,
    budget: Duration,
}

fn is_status(tokens: &[Spanned], tag: &[u8]) -> Option<Status> {
    let (a, b) = first_two(tokens);
    if a == Some(tag) {
        b.and_then(Status::from_word)
    } else {
        None
    }
}

fn mentions(tokens: &[Spanned], prefix: &[u8]) -> bool {
    tokens.iter().any(|t| match &t.token {
        Token::Atom(v) | Token::Quoted(v) | Token::Literal { data: v, .. } => v.starts_with(prefix),
        Token::List(inner) | Token::Code(inner) => mentions(inner, prefix),
        Token::Rest(_) => false,
    })
}

/// A line with its first token dropped and strings reduced to their values, for `same`.
fn normalized(line: &Line) -> Vec<Vec<u8>> {
    fn norm(t: &Token) -> Vec<u8> {
        match t {
            Token::Atom(a) => [b"A:".as_slice(), a].concat(),
            Token::Quoted(v) | Token::Literal { data: v, .. } => [b"S:".as_slice(), v].concat(),
            Token::List(inner) | Token::Code(inner) => {
                let mut out = if matches!(t, Token::List(_)) {
                    b"(".to_vec()
                } else {
                    b"[".to_vec()
                };
                for i in inner {
                    out.extend(norm(&i.token));
                    out.push(b' ');
                }
                out.push(b')');
                out
            }
            Token::Rest(r) => [b"R:".as_slice(), r].concat(),
        }
    }
    tokenize(&line.bytes)
        .iter()
        .skip(1)
        .map(|t| norm(&t.token))
        .collect()
}

/// A MUPDATE `tag MAILBOX name location acl` or `tag RESERVE name location` line as a record.
pub(crate) fn parse_record(tokens: &[Spanned]) -> Option<Record> {
    let s = |i: usize| {
        tokens
            .get(i)
            .and_then(|t| t.token.string_value())
            .map(<[u8]>::to_vec)
    };
    let word = first_two(tokens).1?;
    if word.eq_ignore_ascii_case(b"MAILBOX") && tokens.len() == 5 {
        Some(Record {
            name: s(2)?,
            entry: MailboxEntry::Active {
                location: s(3)?,
                acl: s(4)?,
            },
        })
    } else if word.eq_ignore_ascii_case(b"RESERVE") && tokens.len() == 4 {
        Some(Record {
            name: s(2)?,
            entry: MailboxEntry::Reserved { location: s(3)? },
        })
    } else {
        None
    }
}

impl Exec<'_> {
    fn deadline(&self) -> Instant {
        Instant::now() + self.budget
    }

    fn env_for(&self, conn: &str) -> Env {
        let mut env = self.env.clone();
        if let Some(cs) = self.conns.get(conn) {
            env.set("tag", cs.tag.clone());
        }
        env
    }

    fn expand(&self, conn: &str, t: &Template) -> Result<Vec<u8>, StepFail> {
        t.expand(&self.env_for(conn)).map_err(StepFail::msg)
    }

    /// Narrow the oracle with a completion line seen on `conn`.
    fn observe(&mut self, conn: &str, line: &Line) {
        let Some(sim) = self.sim.as_mut() else { return };
        let toks = tokenize(&line.bytes);
        let (Some(tag), Some(word)) = first_two(&toks) else {
            return;
        };
        if let Some(st) = Status::from_word(word)
            && sim.is_pending(conn, tag)
            && sim.completed(conn, tag, &[st]).is_err()
        {
            sim.forget(conn, tag);
        }
    }

    /// The server closed `conn`: note it and forget the connection.
    fn closed_by_server(&mut self, conn: &str) {
        self.tr.note(conn, "closed by server");
        self.conns.remove(conn);
        self.gone.insert(conn.to_string());
        if let Some(sim) = self.sim.as_mut() {
            sim.close(conn);
        }
    }

    /// Read the next line; with `or_closed`, the server closing the connection (now or before)
    /// is `None` instead of a failure.
    async fn read_or_closed(
        &mut self,
        conn: &str,
        deadline: Instant,
        or_closed: bool,
    ) -> Result<Option<Line>, StepFail> {
        if or_closed && self.gone.contains(conn) {
            return Ok(None);
        }
        match self.read(conn, deadline).await {
            Ok(line) => Ok(Some(line)),
            Err(f) if or_closed && f.connection_lost => {
                self.closed_by_server(conn);
                Ok(None)
            }
            Err(f) => Err(f),
        }
    }

    /// Every line received on `conn` in this case so far, from the transcript.
    fn received(&self, conn: &str) -> Vec<Line> {
        self.tr
            .events
            .iter()
            .filter(|e| e.conn == conn && e.dir == Dir::Received)
            .map(|e| {
                let b = &e.bytes;
                match b.strip_suffix(b"\r\n") {
                    Some(l) => Line {
                        bytes: l.to_vec(),
                        bare_lf: false,
                    },
                    None => match b.strip_suffix(b"\n") {
                        Some(l) => Line {
                            bytes: l.to_vec(),
                            bare_lf: true,
                        },
                        None => Line {
                            bytes: b.clone(),
                            bare_lf: false,
                        },
                    },
                }
            })
            .collect()
    }

    /// Log `conn` in as the main user (or the second one), and tell the oracle.
    async fn log_in(&mut self, conn: &str, user2: bool, deadline: Instant) -> Result<(), StepFail> {
        let who = if user2 {
            self.creds.user2.clone()
        } else {
            self.creds.user.clone()
        };
        let (u, p) = who.ok_or_else(|| {
            StepFail::msg(
                "no credentials for this login (give --user/--password or --user2/--password2)",
            )
        })?;
        let (protocol, budget) = (self.sc.meta.protocol, self.budget);
        // On the master, log in the way the master's target says (its GSSAPI service host).
        let master_info = self
            .target
            .master
            .as_deref()
            .filter(|_| self.on_master.contains(conn))
            .map(|m| TargetInfo {
                login: m.login.clone(),
                ..self.info.clone()
            });
        let info = master_info.as_ref().unwrap_or(self.info);
        let cs = get_cs(&mut self.conns, conn)?;
        login(
            cs,
            &mut self.tr,
            &mut self.tags,
            protocol,
            Some(info),
            (&u, &p),
            deadline,
            budget,
        )
        .await?;
        if let Some(sim) = self.sim.as_mut() {
            sim.logged_in(conn);
        }
        Ok(())
    }

    /// Send the runner's own `cfN NOOP` on `conn` (for `silent` and `lacks`); returns its tag and
    /// the deadline for its reply.
    async fn send_noop(&mut self, conn: &str) -> Result<(Vec<u8>, Instant), StepFail> {
        let tag = self.tags.fresh();
        let mut cmd = tag.clone();
        cmd.extend_from_slice(b" NOOP\r\n");
        let deadline = self.deadline();
        let cs = get_cs(&mut self.conns, conn)?;
        send(cs, &mut self.tr, &cmd, deadline).await?;
        Ok((tag, deadline))
    }

    /// A NOOP round-trip on `conn`: every line the server sent before its reply is read (and
    /// recorded). `Ok(false)` when the connection is, or gets, closed (nothing more can arrive).
    async fn barrier(&mut self, conn: &str) -> Result<bool, StepFail> {
        if self.gone.contains(conn) {
            return Ok(false);
        }
        let (tag, deadline) = self.send_noop(conn).await?;
        for _ in 0..MAX_SKIPPED_LINES {
            match self.read_or_closed(conn, deadline, true).await? {
                None => return Ok(false),
                Some(line) if is_status(&tokenize(&line.bytes), &tag).is_some() => {
                    return Ok(true);
                }
                Some(_) => {}
            }
        }
        Err(StepFail::msg("too many lines"))
    }

    async fn read(&mut self, conn: &str, deadline: Instant) -> Result<Line, StepFail> {
        let budget = self.budget;
        let cs = self
            .conns
            .get_mut(conn)
            .ok_or_else(|| StepFail::msg(format!("connection {conn} is not open")))?;
        let line = read(cs, &mut self.tr, deadline, budget).await?;
        self.observe(conn, &line);
        Ok(line)
    }

    fn match_pattern(
        &self,
        conn: &str,
        p: &Pattern,
        line: &Line,
    ) -> Result<HashMap<String, Vec<u8>>, StepFail> {
        let fail = |mismatch: String| StepFail {
            connection_lost: false,
            message: "the line does not match".into(),
            expected: Some(p.src.clone()),
            got: Some(visible(&line.bytes)),
            mismatch: Some(mismatch),
        };
        if line.bare_lf {
            return Err(fail("the line ends with a bare LF instead of CRLF".into()));
        }
        let env = self.env_for(conn);
        match_line(p, &line.bytes, &tokenize(&line.bytes), &env).map_err(|m| {
            let col = m.offset + 1;
            fail(format!(
                "column {col}: expected {}, got {}",
                m.expected, m.got
            ))
        })
    }

    async fn send_text(
        &mut self,
        conn: &str,
        bytes: Vec<u8>,
        set_tag: bool,
    ) -> Result<(), StepFail> {
        let deadline = self.deadline();
        let cs = get_cs(&mut self.conns, conn)?;
        if set_tag {
            cs.tag = tag_of(&bytes);
        }
        send(cs, &mut self.tr, &bytes, deadline).await?;
        if let Some(sim) = self.sim.as_mut() {
            sim.sent(conn, &bytes);
        }
        Ok(())
    }

    /// Read the complete reply to `tag` (MUPDATE data lines, then the completion).
    async fn read_reply(
        &mut self,
        conn: &str,
        tag: &[u8],
        deadline: Instant,
    ) -> Result<(Vec<Record>, Status), StepFail> {
        let mut data = Vec::new();
        for _ in 0..MAX_SKIPPED_LINES {
            let budget = self.budget;
            let cs = get_cs(&mut self.conns, conn)?;
            let line = read(cs, &mut self.tr, deadline, budget).await?;
            let toks = tokenize(&line.bytes);
            if let Some(st) = is_status(&toks, tag) {
                return Ok((data, st));
            }
            let tagged_ok = first_two(&toks).0 == Some(tag);
            match parse_record(&toks) {
                Some(r) if tagged_ok => data.push(r),
                _ => {
                    return Err(StepFail {
                        message: format!(
                            "unexpected line while reading the reply to {}: only `{0} MAILBOX name location acl`, `{0} RESERVE name location` and `{0} OK|NO|BAD ...` may come (RFC 3656 3.5, 3.6)",
                            String::from_utf8_lossy(tag)
                        ),
                        got: Some(visible(&line.bytes)),
                        ..StepFail::default()
                    });
                }
            }
        }
        Err(StepFail::msg("too many lines"))
    }

    fn judge_reply(
        &mut self,
        conn: &str,
        tag: &[u8],
        data: &[Record],
        st: Status,
    ) -> Result<(), String> {
        let prefix = self.prefix.clone().into_bytes();
        let owned = move |n: &[u8]| n.starts_with(&prefix);
        match self.sim.as_mut() {
            Some(sim) => sim.observed_reply(conn, tag, data, st, &owned),
            None => Ok(()),
        }
    }

    async fn step(&mut self, step: &Step) -> Result<(), StepFail> {
        let protocol = self.sc.meta.protocol;
        let budget = self.budget;
        match &step.kind {
            StepKind::Open { conn, mode, master } => {
                if let Some(mut old) = self.conns.remove(conn) {
                    old.conn.shutdown().await;
                }
                self.gone.remove(conn);
                let deadline = self.deadline();
                let raw = *mode == OpenMode::Raw;
                let target = if *master {
                    self.target.master.as_deref().ok_or_else(|| {
                        StepFail::msg("no --master given (the master of the slave under test)")
                    })?
                } else {
                    self.target
                };
                let (cs, _) = open(
                    conn,
                    target,
                    protocol,
                    raw,
                    &mut self.tr,
                    &mut self.tags,
                    deadline,
                    budget,
                )
                .await?;
                self.conns.insert(conn.clone(), cs);
                if *master {
                    self.on_master.insert(conn.clone());
                } else {
                    self.on_master.remove(conn);
                }
                if let Some(sim) = self.sim.as_mut() {
                    sim.open_on(conn, false, *master);
                }
                match mode {
                    OpenMode::Login => self.log_in(conn, false, deadline).await?,
                    OpenMode::LoginUser2 => self.log_in(conn, true, deadline).await?,
                    OpenMode::NoAuth | OpenMode::Raw => {}
                }
            }
            StepKind::Login { conn, user2 } => {
                let deadline = self.deadline();
                self.log_in(conn, *user2, deadline).await?;
            }
            StepKind::StartTls { conn } => {
                let deadline = self.deadline();
                let target = self.target;
                let cs = get_cs(&mut self.conns, conn)?;
                starttls(
                    cs,
                    &mut self.tr,
                    &mut self.tags,
                    protocol,
                    target,
                    deadline,
                    budget,
                )
                .await?;
            }
            StepKind::Tls { conn } => {
                let deadline = self.deadline();
                let target = self.target;
                let cs = get_cs(&mut self.conns, conn)?;
                tls_handshake(cs, &mut self.tr, target, deadline).await?;
            }
            StepKind::Close { conn } => {
                if let Some(mut cs) = self.conns.remove(conn) {
                    self.tr.note(conn, "close");
                    cs.conn.shutdown().await;
                }
                if let Some(sim) = self.sim.as_mut() {
                    sim.close(conn);
                }
            }
            StepKind::Send { conn, text, crlf } => {
                let mut bytes = self.expand(conn, text)?;
                if *crlf {
                    bytes.extend_from_slice(b"\r\n");
                }
                self.send_text(conn, bytes, *crlf).await?;
            }
            StepKind::SendJudged { conn, text } => {
                let mut bytes = self.expand(conn, text)?;
                bytes.extend_from_slice(b"\r\n");
                let tag = tag_of(&bytes);
                self.send_text(conn, bytes, true).await?;
                let deadline = self.deadline();
                let (data, st) = self.read_reply(conn, &tag, deadline).await?;
                if let Err(e) = self.judge_reply(conn, &tag, &data, st) {
                    return Err(StepFail {
                        message: format!("the reply contradicts the model: {e}"),
                        got: Some(format!(
                            "{st} with {} data line(s) about this case's names",
                            data.iter()
                                .filter(|r| r.name.starts_with(self.prefix.as_bytes()))
                                .count()
                        )),
                        ..StepFail::default()
                    });
                }
            }
            StepKind::Expect {
                conn,
                pattern,
                or_closed,
            } => {
                let deadline = self.deadline();
                let Some(line) = self.read_or_closed(conn, deadline, *or_closed).await? else {
                    return Ok(());
                };
                let caps = self.match_pattern(conn, pattern, &line)?;
                self.env.vars.extend(caps);
            }
            StepKind::Eventually {
                conn,
                pattern,
                or_closed,
            } => {
                let deadline = self.deadline();
                if *or_closed && self.gone.contains(conn) {
                    return Ok(());
                }
                let last_tag = get_cs(&mut self.conns, conn)?.tag.clone();
                for _ in 0..MAX_SKIPPED_LINES {
                    let Some(line) = self.read_or_closed(conn, deadline, *or_closed).await? else {
                        return Ok(());
                    };
                    if let Ok(caps) = self.match_pattern(conn, pattern, &line) {
                        self.env.vars.extend(caps);
                        return Ok(());
                    }
                    if !last_tag.is_empty()
                        && is_status(&tokenize(&line.bytes), &last_tag).is_some()
                    {
                        return Err(StepFail {
                            message: format!(
                                "the completion of {} came before the expected line",
                                String::from_utf8_lossy(&last_tag)
                            ),
                            expected: Some(pattern.src.clone()),
                            got: Some(visible(&line.bytes)),
                            ..StepFail::default()
                        });
                    }
                }
                return Err(StepFail::msg("too many lines"));
            }
            StepKind::ExpectExact { conn, text } => {
                let want = self.expand(conn, text)?;
                let deadline = self.deadline();
                let line = self.read(conn, deadline).await?;
                if line.bytes != want || line.bare_lf {
                    let at = line
                        .bytes
                        .iter()
                        .zip(&want)
                        .position(|(a, b)| a != b)
                        .unwrap_or(line.bytes.len().min(want.len()));
                    return Err(StepFail {
                        connection_lost: false,
                        message: "the line is not byte-exact".into(),
                        expected: Some(format!("{}\\r\\n", visible(&want))),
                        got: Some(format!(
                            "{}{}",
                            visible(&line.bytes),
                            if line.bare_lf { "\\n" } else { "\\r\\n" }
                        )),
                        mismatch: Some(if line.bare_lf && line.bytes == want {
                            "bare LF instead of CRLF".into()
                        } else {
                            format!("first difference at byte {}", at + 1)
                        }),
                    });
                }
            }
            StepKind::ExpectRegex { conn, regex } => {
                let src = self.expand(conn, regex)?;
                let src = format!("(?s)^(?:{})$", String::from_utf8_lossy(&src));
                let re = crate::scenario::template::compile_regex(&src).map_err(StepFail::msg)?;
                let deadline = self.deadline();
                let line = self.read(conn, deadline).await?;
                if !re.is_match(&line.bytes) || line.bare_lf {
                    return Err(StepFail {
                        connection_lost: false,
                        message: "the line does not match the regex".into(),
                        expected: Some(src),
                        got: Some(visible(&line.bytes)),
                        mismatch: line.bare_lf.then(|| "bare LF instead of CRLF".into()),
                    });
                }
            }
            StepKind::Closed { conn } => {
                if self.gone.contains(conn) {
                    return Ok(());
                }
                let deadline = self.deadline();
                let cs = get_cs(&mut self.conns, conn)?;
                match cs.conn.read_line(deadline, budget).await {
                    Err(ReadError::Closed) | Err(ReadError::Io(_)) => self.closed_by_server(conn),
                    Err(e @ ReadError::Timeout(_)) => {
                        return Err(StepFail::msg(format!(
                            "the server did not close the connection: {e}"
                        )));
                    }
                    Err(e) => return Err(StepFail::msg(e.to_string())),
                    Ok(line) => {
                        self.tr.push(conn, Dir::Received, &line.bytes);
                        return Err(StepFail {
                            message: "expected the server to close the connection, got a line"
                                .into(),
                            expected: Some("connection closed".into()),
                            got: Some(visible(&line.bytes)),
                            ..StepFail::default()
                        });
                    }
                }
            }
            StepKind::Settle { conn } => {
                let deadline = self.deadline();
                for _ in 0..MAX_SKIPPED_LINES {
                    let cs = get_cs(&mut self.conns, conn)?;
                    match cs.conn.read_line(deadline, budget).await {
                        Err(ReadError::Closed) | Err(ReadError::Io(_)) => {
                            self.closed_by_server(conn);
                            break;
                        }
                        Err(ReadError::Timeout(_)) => {
                            self.tr
                                .note(conn, "no reaction within the timeout (still reading)");
                            break;
                        }
                        Err(e) => return Err(StepFail::msg(e.to_string())),
                        Ok(line) => {
                            self.tr.push(conn, Dir::Received, &line.bytes);
                            self.observe(conn, &line);
                            let toks = tokenize(&line.bytes);
                            let (a, b) = first_two(&toks);
                            let done = match (a, b) {
                                (Some(b"*"), Some(w)) => w.eq_ignore_ascii_case(b"BYE"),
                                (Some(_), Some(w)) => Status::from_word(w).is_some(),
                                _ => false,
                            };
                            if done {
                                break;
                            }
                        }
                    }
                }
            }
            StepKind::Silent { conn } => {
                let (tag, deadline) = self.send_noop(conn).await?;
                let line = self.read(conn, deadline).await?;
                if is_status(&tokenize(&line.bytes), &tag).is_none() {
                    return Err(StepFail {
                        message:
                            "expected nothing pending; the NOOP probe's reply was not the next line"
                                .into(),
                        expected: Some(format!("{} OK|NO|BAD ...", String::from_utf8_lossy(&tag))),
                        got: Some(visible(&line.bytes)),
                        ..StepFail::default()
                    });
                }
            }
            StepKind::Unordered { conn, patterns } => {
                let deadline = self.deadline();
                let mut lines = Vec::new();
                for _ in patterns {
                    lines.push(self.read(conn, deadline).await?);
                }
                // Try every assignment (patterns are few): backtracking over lines.
                let mut results: MatchTable = Vec::new();
                for p in patterns {
                    results.push(
                        lines
                            .iter()
                            .map(|l| self.match_pattern(conn, p, l).ok())
                            .collect(),
                    );
                }
                let mut used = vec![false; lines.len()];
                let mut chosen = Vec::new();
                if assign(&results, 0, &mut used, &mut chosen) {
                    for (pi, li) in chosen.into_iter().enumerate() {
                        if let Some(Some(c)) = results.get(pi).and_then(|r| r.get(li)) {
                            self.env.vars.extend(c.clone());
                        }
                    }
                } else {
                    let unmatched: Vec<String> = lines
                        .iter()
                        .enumerate()
                        .filter(|(li, _)| {
                            results
                                .iter()
                                .all(|r| r.get(*li).is_none_or(Option::is_none))
                        })
                        .map(|(_, l)| visible(&l.bytes))
                        .collect();
                    return Err(StepFail {
                        connection_lost: false,
                        message: format!(
                            "the next {} lines do not match the patterns in any order",
                            lines.len()
                        ),
                        expected: Some(
                            patterns
                                .iter()
                                .map(|p| p.src.clone())
                                .collect::<Vec<_>>()
                                .join("\n"),
                        ),
                        got: Some(show_lines(&lines)),
                        mismatch: Some(if unmatched.is_empty() {
                            "every line matches some pattern, but not one-to-one".into()
                        } else {
                            format!("matching no pattern: {}", unmatched.join(" | "))
                        }),
                    });
                }
            }
            StepKind::Collect {
                conn,
                name,
                mine,
                until,
            } => {
                let deadline = self.deadline();
                let mut kept = Vec::new();
                let prefix = self.prefix.clone().into_bytes();
                let mut done = false;
                for _ in 0..MAX_SKIPPED_LINES {
                    let line = self.read(conn, deadline).await?;
                    if let Ok(caps) = self.match_pattern(conn, until, &line) {
                        self.env.vars.extend(caps);
                        done = true;
                        break;
                    }
                    if !*mine || mentions(&tokenize(&line.bytes), &prefix) {
                        kept.push(line);
                    }
                }
                if !done {
                    return Err(StepFail::msg("too many lines"));
                }
                self.sets.insert(name.clone(), kept);
            }
            StepKind::Same { a, b } => {
                let norm = |n: &str| -> Vec<Vec<Vec<u8>>> {
                    let mut v: Vec<_> = self
                        .sets
                        .get(n)
                        .map(|s| s.iter().map(normalized).collect())
                        .unwrap_or_default();
                    v.sort();
                    v
                };
                let (na, nb) = (norm(a), norm(b));
                if na != nb {
                    let show =
                        |n: &str| self.sets.get(n).map(|s| show_lines(s)).unwrap_or_default();
                    return Err(StepFail {
                        message: format!(
                            "the sets {a} and {b} differ (compared without tags, strings by value)"
                        ),
                        expected: Some(format!("{a}:\n{}", show(a))),
                        got: Some(format!("{b}:\n{}", show(b))),
                        ..StepFail::default()
                    });
                }
            }
            StepKind::Count { name, n } => {
                let have = self.sets.get(name).map_or(0, Vec::len);
                if have != *n {
                    return Err(StepFail {
                        message: format!("the set {name} has {have} line(s), expected {n}"),
                        got: self.sets.get(name).map(|s| show_lines(s)),
                        ..StepFail::default()
                    });
                }
            }
            StepKind::Has { name, pattern } => {
                let lines = self.sets.get(name).cloned().unwrap_or_default();
                let hit = lines.iter().find_map(|l| {
                    let env = self.env.clone();
                    match_line(pattern, &l.bytes, &tokenize(&l.bytes), &env).ok()
                });
                match hit {
                    Some(caps) => self.env.vars.extend(caps),
                    None => {
                        return Err(StepFail {
                            message: format!("no line of the set {name} matches"),
                            expected: Some(pattern.src.clone()),
                            got: Some(show_lines(&lines)),
                            ..StepFail::default()
                        });
                    }
                }
            }
            StepKind::Lacks { conn, pattern } => {
                let barrier = self.barrier(conn).await?;
                let mut lines = self.received(conn);
                if barrier {
                    // The barrier's own reply is not one of the lines judged.
                    lines.pop();
                }
                let env = self.env_for(conn);
                let hits: Vec<&Line> = lines
                    .iter()
                    .filter(|l| {
                        !l.bare_lf
                            && match_line(pattern, &l.bytes, &tokenize(&l.bytes), &env).is_ok()
                    })
                    .collect();
                if let Some(first) = hits.first() {
                    return Err(StepFail {
                        message: format!(
                            "{} line(s) received on {conn} match a pattern that must not arrive",
                            hits.len()
                        ),
                        expected: Some(format!("no line like: {}", pattern.src)),
                        got: Some(visible(&first.bytes)),
                        ..StepFail::default()
                    });
                }
            }
            StepKind::Last {
                name,
                conn,
                pattern,
            } => {
                let lines = if *conn {
                    self.received(name)
                } else {
                    self.sets.get(name).cloned().unwrap_or_default()
                };
                let Some(line) = lines.last() else {
                    return Err(StepFail {
                        message: format!(
                            "{} {name} has no line",
                            if *conn { "the connection" } else { "the set" }
                        ),
                        expected: Some(pattern.src.clone()),
                        ..StepFail::default()
                    });
                };
                let caps = self
                    .match_pattern(if *conn { name } else { "" }, pattern, line)
                    .map_err(|f| StepFail {
                        message: format!("the last line of {name} does not match"),
                        got: Some(show_lines(&lines)),
                        ..f
                    })?;
                self.env.vars.extend(caps);
            }
            StepKind::Race { sends } => {
                let mut planned = Vec::new();
                for (conn, t, _) in sends {
                    let mut b = self.expand(conn, t)?;
                    b.extend_from_slice(b"\r\n");
                    planned.push((conn.clone(), b));
                }
                let keys = match self.sim.as_mut() {
                    Some(sim) => sim.race(&planned).map_err(StepFail::msg)?,
                    None => return Err(StepFail::msg("race is MUPDATE only")),
                };
                let deadline = self.deadline();
                for (conn, bytes) in &planned {
                    let cs = get_cs(&mut self.conns, conn)?;
                    cs.tag = tag_of(bytes);
                    send(cs, &mut self.tr, bytes, deadline).await?;
                }
                let mut observed = Vec::new();
                for (conn, tag) in &keys {
                    let (data, st) = self.read_reply(conn, tag, deadline).await?;
                    observed.push((conn.clone(), tag.clone(), data, st));
                }
                let summary: Vec<String> = observed
                    .iter()
                    .map(|(c, t, d, st)| {
                        format!(
                            "{c} {}: {st}{}",
                            String::from_utf8_lossy(t),
                            if d.is_empty() {
                                String::new()
                            } else {
                                format!(" +{} data", d.len())
                            }
                        )
                    })
                    .collect();
                for (conn, tag, data, st) in &observed {
                    if let Err(e) = self.judge_reply(conn, tag, data, *st) {
                        return Err(StepFail {
                            message: "the race's replies are not the outcome of any serial order of the commands (murder_model::mailbox_db::concurrent_outcomes)".into(),
                            got: Some(summary.join(", ")),
                            mismatch: Some(format!("{conn} {}: {e}", String::from_utf8_lossy(tag))),
                            ..StepFail::default()
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Lines made visible, one per line (for failure reports).
fn show_lines(lines: &[Line]) -> String {
    lines
        .iter()
        .map(|l| visible(&l.bytes))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assign(results: &MatchTable, pi: usize, used: &mut [bool], chosen: &mut Vec<usize>) -> bool {
    let Some(row) = results.get(pi) else {
        return true;
    };
    for (li, r) in row.iter().enumerate() {
        if r.is_some() && used.get(li) == Some(&false) {
            if let Some(u) = used.get_mut(li) {
                *u = true;
            }
            chosen.push(li);
            if assign(results, pi + 1, used, chosen) {
                return true;
            }
            chosen.pop();
            if let Some(u) = used.get_mut(li) {
                *u = false;
            }
        }
    }
    false
}

/// Run one case. `index` makes its names unique within the run.
pub async fn execute(
    sc: &Scenario,
    index: usize,
    target: &Target,
    info: &TargetInfo,
    cfg: &super::RunConfig,
) -> Executed {
    let (creds, run_id) = (&cfg.creds, cfg.run_id.as_str());
    let mut budget = cfg
        .timeout
        .max(Duration::from_secs(sc.meta.timeout.unwrap_or(0)));
    if let Some(cap) = cfg.max_timeout {
        budget = budget.min(cap);
    }
    let mut ex = Exec {
        sc,
        target,
        info,
        creds,
        env: case_env(run_id, index, creds),
        conns: HashMap::new(),
        gone: HashSet::new(),
        on_master: HashSet::new(),
        sets: HashMap::new(),
        sim: (sc.meta.protocol == Protocol::Mupdate)
            .then(|| sim_for(sc, sc.meta.needs.contains(&Need::Slave))),
        tr: Transcript::default(),
        tags: Tags::default(),
        prefix: name_prefix(run_id, index),
        budget,
    };
    let source_line = |n: usize| {
        sc.source
            .lines()
            .nth(n.saturating_sub(1))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let mut failure = None;
    'phases: for (phase, steps) in [("setup", &sc.setup), ("test", &sc.test)] {
        for step in steps {
            if let Err(f) = ex.step(step).await {
                ex.tr.note(
                    "--",
                    &format!("^^^ FAILED at line {}: {}", step.line, f.message),
                );
                failure = Some(Failure {
                    phase: phase.to_string(),
                    line: step.line,
                    step: source_line(step.line),
                    message: f.message,
                    expected: f.expected,
                    got: f.got,
                    mismatch: f.mismatch,
                    connection_lost: f.connection_lost,
                });
                break 'phases;
            }
        }
    }
    let mut warnings = Vec::new();
    if !sc.cleanup.is_empty() {
        ex.tr.note("--", "cleanup");
        for step in &sc.cleanup {
            if let Err(f) = ex.step(step).await {
                warnings.push(format!(
                    "cleanup line {} `{}`: {}",
                    step.line,
                    source_line(step.line),
                    f.message
                ));
                break;
            }
        }
    }
    for (_, mut cs) in ex.conns.drain() {
        cs.conn.shutdown().await;
    }
    Executed {
        failure,
        warnings,
        transcript: ex.tr,
    }
}
