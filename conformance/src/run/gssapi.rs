//! Logging in with SASL GSSAPI (Kerberos 5, RFC 4752): `--sasl-mech GSSAPI`, for servers that
//! offer only Kerberos. The runner uses the caller's credential cache (`KRB5CCNAME`, filled by
//! `kinit`; `KRB5_CONFIG` picks the `krb5.conf`): `--user NAME` names the client principal
//! (`NAME` or `NAME@REALM`, whose ticket must be in the cache, e.g. a `DIR:` collection holding
//! both users' tickets) and is also the user name the cases expect the server to map it to;
//! `--password` is not needed. The service is `mupdate@HOST` or `imap@HOST`, HOST from
//! `--target` or `--sasl-service-host`.
//!
//! The exchange is judged here, with the runner's own reading of the lines (never impl's
//! parsers): MUPDATE (RFC 3656 §4.2) sends `AUTHENTICATE "GSSAPI" "<initial response>"` and
//! expects every challenge as a bare BASE64 line; IMAP (RFC 3501 §6.2.2) sends
//! `AUTHENTICATE GSSAPI` (with the initial response when the server has `SASL-IR`) and expects
//! `+ BASE64` continuations. The GSS token machinery itself (context establishment and the
//! RFC 4752 security-layer negotiation, "no security layer") is `murder-server`'s
//! `GssapiClient`, linked only with this crate's cargo feature `gssapi` (it needs the system
//! Kerberos library). Tokens never reach transcripts, reports or bundles: they are shown as
//! `<GSSAPI token, N octets>`.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::time::Instant;

use super::TargetInfo;
use super::session::{ConnState, StepFail, Tags, read, send_shown};
use super::transcript::Transcript;
use crate::scenario::Protocol;
use crate::wire::token::{Token, tokenize};
use crate::wire::visible::visible;

/// Most server challenges one GSSAPI exchange may take (Kerberos needs two: the AP-REP and the
/// security-layer offer).
pub const MAX_ROUNDS: usize = 8;

/// How the runner logs in (`--sasl-mech`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum LoginMech {
    /// With `--user`/`--password`: MUPDATE `AUTHENTICATE "PLAIN"`, IMAP `LOGIN` (or
    /// `AUTHENTICATE PLAIN` under `LOGINDISABLED`).
    #[default]
    #[serde(rename = "PLAIN")]
    Plain,
    /// SASL GSSAPI from the credential cache, to the host-based service `SERVICE@host`.
    #[serde(rename = "GSSAPI")]
    Gssapi {
        /// The service's host (the `HOST` of `mupdate/HOST@REALM`).
        host: String,
    },
}

impl LoginMech {
    /// `--sasl-mech NAME` (case-insensitive) for a target on `host`.
    pub fn from_name(name: &str, host: &str) -> Result<LoginMech, String> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Ok(LoginMech::Plain)
        } else if name.eq_ignore_ascii_case("GSSAPI") {
            if !cfg!(feature = "gssapi") {
                return Err(
                    "--sasl-mech GSSAPI needs a conformance built with the cargo \
                     feature `gssapi` (cargo build -p conformance --features gssapi)"
                        .into(),
                );
            }
            if host.is_empty() {
                return Err("--sasl-mech GSSAPI: no service host".into());
            }
            Ok(LoginMech::Gssapi {
                host: host.to_string(),
            })
        } else {
            Err(format!("--sasl-mech {name}: only PLAIN and GSSAPI"))
        }
    }

    /// The SASL name, upper case.
    pub fn name(&self) -> &'static str {
        match self {
            LoginMech::Plain => "PLAIN",
            LoginMech::Gssapi { .. } => "GSSAPI",
        }
    }

    /// Whether this is the default (PLAIN).
    pub fn is_plain(&self) -> bool {
        *self == LoginMech::Plain
    }

    /// The host-based service name the runner asks a ticket for, for `protocol`.
    pub fn service(&self, protocol: Protocol) -> Option<String> {
        match self {
            LoginMech::Plain => None,
            LoginMech::Gssapi { host } => Some(format!("{}@{host}", service_name(protocol))),
        }
    }
}

/// The GSSAPI service name of a protocol: RFC 3656 §4.2 `mupdate`, RFC 3501 §11.1 `imap`.
pub fn service_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Mupdate => "mupdate",
        Protocol::Imap => "imap",
    }
}

/// The host of `--target HOST:PORT` (brackets of an IPv6 literal removed).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// What the server answered, read with the runner's tokenizer.
#[derive(Debug, PartialEq, Eq)]
enum ServerLine {
    /// The tagged completion, with its status word (upper case).
    Done(String),
    /// A challenge, decoded.
    Challenge(Vec<u8>),
}

fn fail(message: String, expected: &str, got: &[u8]) -> StepFail {
    StepFail {
        message,
        expected: Some(expected.to_string()),
        got: Some(visible(got)),
        ..StepFail::default()
    }
}

/// Reads one server line of the exchange and judges its shape.
fn judge_line(protocol: Protocol, tag: &[u8], line: &[u8]) -> Result<ServerLine, StepFail> {
    let toks = tokenize(line);
    let word = |i: usize| match toks.get(i).map(|t| &t.token) {
        Some(Token::Atom(a)) => Some(a.as_slice()),
        _ => None,
    };
    if word(0) == Some(tag) {
        let status = word(1).map(|w| String::from_utf8_lossy(w).to_ascii_uppercase());
        return Ok(ServerLine::Done(status.unwrap_or_default()));
    }
    let (payload, expected, rule) = match protocol {
        Protocol::Mupdate => (
            line,
            "a bare BASE64 line",
            "RFC 3656 4.2: SASL blobs after the command are bare BASE64 lines, not strings",
        ),
        Protocol::Imap => match line.strip_prefix(b"+ ").or(line.strip_prefix(b"+")) {
            Some(p) => (
                p,
                "+ BASE64",
                "RFC 3501 6.2.2: a challenge is `+ ` and BASE64",
            ),
            None => {
                return Err(fail(
                    "RFC 3501 6.2.2: a GSSAPI challenge must be a `+` continuation".into(),
                    "+ BASE64",
                    line,
                ));
            }
        },
    };
    STANDARD
        .decode(payload)
        .map(ServerLine::Challenge)
        .map_err(|_| fail(format!("{rule}; this one does not decode"), expected, line))
}

/// The display of a token in transcripts.
fn shown_token(n: usize) -> String {
    format!("<GSSAPI token, {n} octets>")
}

/// Logs in as `user` with GSSAPI (the login of [`super::session::login`] under
/// `--sasl-mech GSSAPI`), judging the exchange's shape; any deviation is a [`StepFail`] that
/// shows the line received and the rule.
#[allow(clippy::too_many_arguments)]
pub async fn login(
    cs: &mut ConnState,
    tr: &mut Transcript,
    tags: &mut Tags,
    protocol: Protocol,
    info: &TargetInfo,
    user: &str,
    deadline: Instant,
    budget: Duration,
) -> Result<(), StepFail> {
    let Some(service) = info.login.service(protocol) else {
        return Err(StepFail::msg("GSSAPI login without --sasl-mech GSSAPI"));
    };
    let tag = tags.fresh();
    let t = String::from_utf8_lossy(&tag).into_owned();
    let who = format!("login as {user} with GSSAPI to {service}");
    let (mut client, first) = client::start(service.clone(), user.to_string())
        .await
        .map_err(|e| StepFail::msg(format!("{who} failed on this side: {e}")))?;
    let ir = STANDARD.encode(&first);
    // MUPDATE's initial response is optional; IMAP's needs SASL-IR (RFC 4959).
    let (cmd, shown, ir_sent) = match protocol {
        Protocol::Mupdate => (
            format!("{t} AUTHENTICATE \"GSSAPI\" \"{ir}\"\r\n"),
            format!(
                "{t} AUTHENTICATE \"GSSAPI\" {}\r\n",
                shown_token(first.len())
            ),
            true,
        ),
        Protocol::Imap if info.caps.contains("SASL-IR") => (
            format!("{t} AUTHENTICATE GSSAPI {ir}\r\n"),
            format!("{t} AUTHENTICATE GSSAPI {}\r\n", shown_token(first.len())),
            true,
        ),
        Protocol::Imap => (
            format!("{t} AUTHENTICATE GSSAPI\r\n"),
            format!("{t} AUTHENTICATE GSSAPI\r\n"),
            false,
        ),
    };
    send_shown(cs, tr, cmd.as_bytes(), shown.as_bytes(), deadline).await?;
    let mut pending_first = (!ir_sent).then_some(first);
    for _ in 0..=MAX_ROUNDS {
        let line = read(cs, tr, deadline, budget).await?;
        match judge_line(protocol, &tag, &line.bytes)? {
            ServerLine::Done(status) if status == "OK" => {
                if pending_first.is_some() || !client.is_done() {
                    return Err(fail(
                        format!(
                            "{who}: OK before the security-layer negotiation ended \
                             (RFC 4752 3.1: the server sends a wrapped layer offer and \
                             waits for the client's choice)"
                        ),
                        "a challenge",
                        &line.bytes,
                    ));
                }
                return Ok(());
            }
            ServerLine::Done(_) => {
                return Err(fail(
                    format!(
                        "{who} refused (is the ticket in KRB5CCNAME, the service principal \
                         right (--sasl-service-host), --user the server's name for it?)"
                    ),
                    &format!("{t} OK ..."),
                    &line.bytes,
                ));
            }
            ServerLine::Challenge(challenge) => {
                let response = match pending_first.take() {
                    Some(first) if challenge.is_empty() => first,
                    Some(_) => {
                        return Err(fail(
                            format!(
                                "{who}: RFC 4752 3.1: without an initial response the first \
                                 challenge is empty"
                            ),
                            "+ ",
                            &line.bytes,
                        ));
                    }
                    None if client.is_done() => {
                        return Err(fail(
                            format!(
                                "{who}: a challenge after the security-layer negotiation \
                                 ended (RFC 4752 3.1: the server answers OK or NO)"
                            ),
                            &format!("{t} OK ..."),
                            &line.bytes,
                        ));
                    }
                    None => {
                        let (next, response) =
                            client::step(client, challenge).await.map_err(|e| {
                                fail(
                                    format!("{who}: the server's challenge is refused: {e}"),
                                    "a valid GSSAPI token or security-layer offer",
                                    &line.bytes,
                                )
                            })?;
                        client = next;
                        response
                    }
                };
                let b64 = format!("{}\r\n", STANDARD.encode(&response));
                let shown = format!("{}\r\n", shown_token(response.len()));
                send_shown(cs, tr, b64.as_bytes(), shown.as_bytes(), deadline).await?;
            }
        }
    }
    Err(StepFail::msg(format!(
        "{who}: no result after {MAX_ROUNDS} challenges"
    )))
}

/// The GSS token machinery: `murder-server`'s `GssapiClient` (a blocking library: every call
/// runs on a blocking thread), or nothing without the feature.
#[cfg(feature = "gssapi")]
mod client {
    use murder_server::auth::gssapi::GssapiClient;

    /// One client exchange.
    pub struct Client(Box<GssapiClient>);

    impl Client {
        /// Whether the last response (the security-layer choice) has been produced.
        pub fn is_done(&self) -> bool {
            self.0.is_done()
        }
    }

    /// A client for `service` with the ticket of `principal`, and its first token.
    pub async fn start(service: String, principal: String) -> Result<(Client, Vec<u8>), String> {
        tokio::task::spawn_blocking(move || {
            let mut c =
                GssapiClient::new(&service, Some(&principal), "").map_err(|e| e.to_string())?;
            let first = c.initial_response().map_err(|e| e.to_string())?;
            Ok((Client(Box::new(c)), first))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The response to `challenge`, and the client for the next one.
    pub async fn step(c: Client, challenge: Vec<u8>) -> Result<(Client, Vec<u8>), String> {
        let Client(mut inner) = c;
        tokio::task::spawn_blocking(move || {
            let r = inner.step(&challenge).map_err(|e| e.to_string())?;
            Ok((Client(inner), r))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[cfg(not(feature = "gssapi"))]
mod client {
    /// No client without the feature (never made: `LoginMech::from_name` refuses GSSAPI).
    pub enum Client {}

    impl Client {
        /// Unreachable: there is no client.
        pub fn is_done(&self) -> bool {
            match *self {}
        }
    }

    /// Always fails: built without the feature.
    pub async fn start(_service: String, _principal: String) -> Result<(Client, Vec<u8>), String> {
        Err("built without the cargo feature `gssapi`".into())
    }

    /// Unreachable: there is no client.
    pub async fn step(c: Client, _challenge: Vec<u8>) -> Result<(Client, Vec<u8>), String> {
        match c {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Need, parse_scenario};

    #[test]
    fn mechanism_names_and_services() {
        assert_eq!(LoginMech::from_name("plain", "h"), Ok(LoginMech::Plain));
        assert!(LoginMech::from_name("SCRAM-SHA-1", "h").is_err());
        let gss = LoginMech::from_name("gssapi", "localhost");
        if cfg!(feature = "gssapi") {
            let gss = gss.unwrap();
            assert_eq!(gss.name(), "GSSAPI");
            assert!(!gss.is_plain());
            assert_eq!(
                gss.service(Protocol::Mupdate).as_deref(),
                Some("mupdate@localhost")
            );
            assert_eq!(
                gss.service(Protocol::Imap).as_deref(),
                Some("imap@localhost")
            );
        } else {
            assert!(gss.unwrap_err().contains("feature `gssapi`"));
        }
        assert_eq!(LoginMech::Plain.service(Protocol::Imap), None);
        assert_eq!(host_of("localhost:3905"), "localhost");
        assert_eq!(host_of("[::1]:143"), "::1");
        assert_eq!(host_of("mail.example:143"), "mail.example");
    }

    #[test]
    fn judges_challenge_lines() {
        use ServerLine::*;
        let ok = |p, l: &[u8]| judge_line(p, b"A1", l).ok();
        let m = Protocol::Mupdate;
        assert_eq!(ok(m, b""), Some(Challenge(Vec::new())));
        assert_eq!(ok(m, b"YWJj"), Some(Challenge(b"abc".to_vec())));
        assert_eq!(ok(m, b"A1 OK \"Authenticated\""), Some(Done("OK".into())));
        assert_eq!(ok(m, b"A1 no \"x\""), Some(Done("NO".into())));
        // A quoted blob or an IMAP-style continuation is not a bare BASE64 line.
        let e = judge_line(m, b"A1", b"\"YWJj\"").unwrap_err();
        assert!(e.message.contains("RFC 3656 4.2"), "{}", e.message);
        assert!(judge_line(m, b"A1", b"+ YWJj").is_err());
        let i = Protocol::Imap;
        assert_eq!(ok(i, b"+ "), Some(Challenge(Vec::new())));
        assert_eq!(ok(i, b"+"), Some(Challenge(Vec::new())));
        assert_eq!(ok(i, b"+ YWJj"), Some(Challenge(b"abc".to_vec())));
        assert!(judge_line(i, b"A1", b"YWJj").is_err());
        assert!(judge_line(i, b"A1", b"+ not base64!").is_err());
        assert_eq!(
            ok(i, b"A1 OK [CAPABILITY IMAP4rev1] done"),
            Some(Done("OK".into()))
        );
    }

    #[test]
    fn login_need_parses() {
        let sc = parse_scenario(
            "mupdate/x.scn",
            "id: mupdate/x\ntitle: t\nprotocol: mupdate\nrfc: RFC3656 4.2\nlevel: MUST\n\
             needs: mech:gssapi login:gssapi\n\n[test]\nopen c1\n",
        )
        .unwrap();
        assert!(sc.meta.needs.contains(&Need::Login("GSSAPI".into())));
        assert_eq!(Need::Login("GSSAPI".into()).to_string(), "login:GSSAPI");
    }
}
