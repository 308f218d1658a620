//! Learn what the target offers before running a suite: its protocol (from the greeting), a
//! MUPDATE server's role, capabilities, SASL mechanisms and STARTTLS. Also the liveness check
//! that decides NOT-RUN after a failure.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::session::{self, ConnState, Tags, greeting, login, read, send, starttls, tagged};
use super::transcript::Transcript;
use super::{Role, Target, TargetInfo, TlsMode};
use crate::scenario::Protocol;
use crate::scenario::names::Credentials;
use crate::wire::frame::Line;
use crate::wire::token::{Token, tokenize};
use crate::wire::visible::visible;

/// Why the target could not be probed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No connection or no greeting.
    #[error("target {addr} unreachable: {reason}")]
    Unreachable {
        /// Address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// `--suite` names one protocol, the greeting is the other's.
    #[error("--suite {want} given, but the target greets like {got}: `{greeting}`")]
    WrongProtocol {
        /// The suite asked for.
        want: Protocol,
        /// What the greeting says.
        got: Protocol,
        /// The greeting.
        greeting: String,
    },
    /// The credentials given are refused: every case would fail for a configuration error.
    #[error("{0}")]
    Login(String),
    /// A greeting that is neither MUPDATE nor IMAP.
    #[error("cannot tell the protocol from the greeting `{0}`")]
    UnknownProtocol(String),
}

fn words(line: &Line) -> Vec<Vec<u8>> {
    tokenize(&line.bytes)
        .into_iter()
        .filter_map(|t| match t.token {
            Token::Atom(a) => Some(a),
            Token::Quoted(v) | Token::Literal { data: v, .. } => Some(v),
            _ => None,
        })
        .collect()
}

fn upper(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_uppercase()
}

/// Which protocol a first greeting line belongs to.
pub fn detect(first: &[u8]) -> Option<Protocol> {
    let w = words(&Line {
        bytes: first.to_vec(),
        bare_lf: false,
    });
    let at = |i: usize| w.get(i).map(|x| upper(x)).unwrap_or_default();
    if at(0) != "*" {
        return None;
    }
    match at(1).as_str() {
        "OK" if at(2) == "MUPDATE" => Some(Protocol::Mupdate),
        "AUTH" | "STARTTLS" | "COMPRESS" | "PARTIAL-UPDATE" => Some(Protocol::Mupdate),
        "OK" | "PREAUTH" => Some(Protocol::Imap),
        _ => None,
    }
}

fn read_banner(lines: &[Line], info: &mut TargetInfo) {
    info.mechs.clear();
    for l in lines {
        let w = words(l);
        let word = w.get(1).map(|x| upper(x)).unwrap_or_default();
        match word.as_str() {
            "AUTH" => info.mechs.extend(w.iter().skip(2).map(|m| upper(m))),
            "STARTTLS" => info.starttls = true,
            "OK" => {
                info.role = match w.get(6).map(Vec::as_slice) {
                    Some(b"(master)") => Role::Master,
                    Some(u) if u.starts_with(b"mupdate://") => Role::Slave,
                    _ => Role::Unknown,
                };
            }
            "" => {}
            other => {
                info.caps.insert(other.to_string());
            }
        }
    }
}

fn read_caps(line: &Line, info: &mut TargetInfo) {
    let toks = tokenize(&line.bytes);
    let mut add = |items: &[Vec<u8>]| {
        for c in items {
            let c = upper(c);
            if let Some(m) = c.strip_prefix("AUTH=") {
                info.mechs.insert(m.to_string());
            }
            if c == "STARTTLS" {
                info.starttls = true;
            }
            info.caps.insert(c);
        }
    };
    let atoms = |ts: &[crate::wire::token::Spanned]| -> Vec<Vec<u8>> {
        ts.iter()
            .filter_map(|t| match &t.token {
                Token::Atom(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    };
    for (i, t) in toks.iter().enumerate() {
        match &t.token {
            Token::Code(inner) => {
                let a = atoms(inner);
                if a.first()
                    .is_some_and(|w| w.eq_ignore_ascii_case(b"CAPABILITY"))
                {
                    add(a.get(1..).unwrap_or_default());
                }
            }
            Token::Atom(w) if i == 1 && w.eq_ignore_ascii_case(b"CAPABILITY") => {
                add(&atoms(toks.get(2..).unwrap_or_default()));
            }
            _ => {}
        }
    }
}

async fn imap_capability(
    cs: &mut ConnState,
    tr: &mut Transcript,
    tags: &mut Tags,
    info: &mut TargetInfo,
    deadline: Instant,
    budget: Duration,
) -> Result<(), session::StepFail> {
    let tag = tags.fresh();
    let mut cmd = tag.clone();
    cmd.extend_from_slice(b" CAPABILITY\r\n");
    send(cs, tr, &cmd, deadline).await?;
    loop {
        let line = read(cs, tr, deadline, budget).await?;
        read_caps(&line, info);
        if line.bytes.starts_with(&tag) {
            return Ok(());
        }
    }
}

/// Probe the target. `hint` skips protocol detection.
pub async fn probe(
    target: &Target,
    hint: Option<Protocol>,
    creds: &Credentials,
    budget: Duration,
) -> Result<TargetInfo, ProbeError> {
    let unreachable = |reason: String| ProbeError::Unreachable {
        addr: target.addr.clone(),
        reason,
    };
    let deadline = Instant::now() + budget;
    let mut tr = Transcript::default();
    let mut tags = Tags::default();
    let guess = hint.unwrap_or(Protocol::Imap);
    let (mut cs, _) = session::open(
        "probe", target, guess, true, &mut tr, &mut tags, deadline, budget,
    )
    .await
    .map_err(|e| unreachable(e.message()))?;
    let first = read(&mut cs, &mut tr, deadline, budget)
        .await
        .map_err(|e| unreachable(format!("no greeting: {}", e.message())))?;
    let detected = detect(&first.bytes);
    let protocol = match (hint, detected) {
        (Some(want), Some(got)) if want != got => {
            return Err(ProbeError::WrongProtocol {
                want,
                got,
                greeting: visible(&first.bytes),
            });
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => return Err(ProbeError::UnknownProtocol(visible(&first.bytes))),
    };
    let mut info = TargetInfo {
        protocol,
        role: Role::Unknown,
        caps: BTreeSet::new(),
        mechs: BTreeSet::new(),
        starttls: false,
        greeting: String::from_utf8_lossy(&first.bytes).into_owned(),
        user2_refused: None,
        login: target.login.clone(),
    };
    let fail = |e: session::StepFail| unreachable(e.message());
    match protocol {
        Protocol::Mupdate => {
            let mut banner = vec![first.clone()];
            if detect(&first.bytes) == Some(Protocol::Mupdate)
                && !upper(&first.bytes).starts_with("* OK MUPDATE")
            {
                banner.extend(
                    greeting(&mut cs, &mut tr, protocol, deadline, budget)
                        .await
                        .map_err(fail)?,
                );
            }
            read_banner(&banner, &mut info);
            if let Some(ok) = banner
                .iter()
                .find(|l| upper(&l.bytes).starts_with("* OK MUPDATE"))
            {
                info.greeting = String::from_utf8_lossy(&ok.bytes).into_owned();
            }
            if target.tls_mode == TlsMode::StartTls {
                let again = starttls(
                    &mut cs, &mut tr, &mut tags, protocol, target, deadline, budget,
                )
                .await
                .map_err(fail)?;
                let caps = std::mem::take(&mut info.caps);
                let role = info.role;
                read_banner(&again, &mut info);
                info.caps.extend(caps);
                if info.role == Role::Unknown {
                    info.role = role;
                }
            }
        }
        Protocol::Imap => {
            read_caps(&first, &mut info);
            imap_capability(&mut cs, &mut tr, &mut tags, &mut info, deadline, budget)
                .await
                .map_err(fail)?;
            if target.tls_mode == TlsMode::StartTls {
                starttls(
                    &mut cs, &mut tr, &mut tags, protocol, target, deadline, budget,
                )
                .await
                .map_err(fail)?;
                // Capabilities before TLS (LOGINDISABLED, STARTTLS) no longer hold.
                info.caps.clear();
                info.mechs.clear();
                imap_capability(&mut cs, &mut tr, &mut tags, &mut info, deadline, budget)
                    .await
                    .map_err(fail)?;
            }
        }
    }
    if let Some((u, p)) = &creds.user {
        login(
            &mut cs,
            &mut tr,
            &mut tags,
            protocol,
            Some(&info),
            (u, p),
            deadline,
            budget,
        )
        .await
        .map_err(|e| ProbeError::Login(e.message()))?;
        if protocol == Protocol::Imap {
            // The capabilities change after login (RFC 3501 6.2.3).
            imap_capability(&mut cs, &mut tr, &mut tags, &mut info, deadline, budget)
                .await
                .map_err(fail)?;
        }
    }
    if let Some((u, p)) = &creds.user2 {
        let (mut c2, _) = session::open(
            "probe2", target, protocol, false, &mut tr, &mut tags, deadline, budget,
        )
        .await
        .map_err(|e| unreachable(e.message()))?;
        // A refused second user (Cyrus mupdate admits admins only) makes its cases N/A.
        if let Err(e) = login(
            &mut c2,
            &mut tr,
            &mut tags,
            protocol,
            Some(&info),
            (u, p),
            deadline,
            budget,
        )
        .await
        {
            info.user2_refused = Some(e.message());
        }
        c2.conn.shutdown().await;
    }
    let tag = tags.fresh();
    let mut cmd = tag.clone();
    cmd.extend_from_slice(b" LOGOUT\r\n");
    if send(&mut cs, &mut tr, &cmd, deadline).await.is_ok() {
        let _ = tagged(&mut cs, &mut tr, &tag, deadline, budget).await;
    }
    cs.conn.shutdown().await;
    Ok(info)
}

/// Delay between two liveness attempts (a supervisor such as Cyrus's `master` respawns a crashed
/// service within a fraction of a second).
pub const LIVENESS_RETRY: Duration = Duration::from_millis(200);

/// True when the target accepts a connection and greets within `budget` (several attempts).
pub async fn alive(target: &Target, protocol: Protocol, budget: Duration) -> bool {
    let deadline = Instant::now() + budget;
    loop {
        let mut tr = Transcript::default();
        let mut tags = Tags::default();
        let attempt = session::open(
            "liveness", target, protocol, false, &mut tr, &mut tags, deadline, budget,
        )
        .await;
        if let Ok((mut cs, _)) = attempt {
            cs.conn.shutdown().await;
            return true;
        }
        if Instant::now() + LIVENESS_RETRY >= deadline {
            return false;
        }
        tokio::time::sleep(LIVENESS_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::LoginMech;

    #[test]
    fn detects_protocols() {
        assert_eq!(detect(b"* AUTH \"PLAIN\""), Some(Protocol::Mupdate));
        assert_eq!(
            detect(b"* OK MUPDATE \"h\" \"Cyrus IMAP\" \"3.6\" \"(master)\""),
            Some(Protocol::Mupdate)
        );
        assert_eq!(
            detect(b"* OK [CAPABILITY IMAP4rev1] hi"),
            Some(Protocol::Imap)
        );
        assert_eq!(detect(b"* PREAUTH hi"), Some(Protocol::Imap));
        assert_eq!(detect(b"220 smtp"), None);
    }

    #[test]
    fn reads_a_cyrus_banner() {
        let lines: Vec<Line> = [
            &b"* AUTH \"PLAIN\" \"LOGIN\""[..],
            b"* STARTTLS",
            b"* PARTIAL-UPDATE",
            b"* OK MUPDATE \"h\" \"Cyrus IMAP\" \"3.6\" \"mupdate://m:3905\"",
        ]
        .iter()
        .map(|b| Line {
            bytes: b.to_vec(),
            bare_lf: false,
        })
        .collect();
        let mut info = TargetInfo {
            protocol: Protocol::Mupdate,
            role: Role::Unknown,
            caps: BTreeSet::new(),
            mechs: BTreeSet::new(),
            starttls: false,
            greeting: String::new(),
            user2_refused: None,
            login: LoginMech::Plain,
        };
        read_banner(&lines, &mut info);
        assert_eq!(info.role, Role::Slave);
        assert!(info.starttls);
        assert!(info.mechs.contains("LOGIN"));
        assert!(info.caps.contains("PARTIAL-UPDATE"));
    }

    #[test]
    fn reads_imap_capabilities() {
        let mut info = TargetInfo {
            protocol: Protocol::Imap,
            role: Role::Unknown,
            caps: BTreeSet::new(),
            mechs: BTreeSet::new(),
            starttls: false,
            greeting: String::new(),
            user2_refused: None,
            login: LoginMech::Plain,
        };
        read_caps(
            &Line {
                bytes:
                    b"* OK [CAPABILITY IMAP4rev1 MULTIAPPEND LITERAL+ AUTH=PLAIN STARTTLS] ready"
                        .to_vec(),
                bare_lf: false,
            },
            &mut info,
        );
        assert!(info.caps.contains("MULTIAPPEND"));
        assert!(info.caps.contains("LITERAL+"));
        assert!(info.mechs.contains("PLAIN"));
        assert!(info.starttls);
    }
}
