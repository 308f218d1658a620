//! Running cases against a target: connections ([`conn`]), their protocol chores
//! ([`session`]: greeting, login, STARTTLS; [`gssapi`]: the GSSAPI login), the probe that learns what the target offers
//! ([`probe`]), the executor of one case ([`exec`]) and the suite runner ([`suite`]).

pub mod conn;
pub mod exec;
pub mod gssapi;
pub mod probe;
pub mod session;
pub mod suite;
pub mod tls;
pub mod transcript;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use crate::scenario::names::Credentials;
use crate::scenario::{Need, Protocol};
pub use gssapi::LoginMech;

/// How the runner's connections use TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP.
    Plain,
    /// TLS from the first byte (`--tls`).
    Implicit,
    /// STARTTLS right after every greeting (`--starttls`).
    StartTls,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`.
    pub addr: String,
    /// TLS use.
    pub tls_mode: TlsMode,
    /// Client configuration for TLS handshakes (also used by `starttls` steps in plain runs).
    pub tls: Arc<ClientConfig>,
    /// Name to verify the certificate against.
    pub server_name: ServerName<'static>,
    /// The master of this target when it is a MUPDATE slave (`--master`), for the cases that
    /// write on the master and look on the slave (`needs: slave master`, `open NAME master`).
    pub master: Option<Box<Target>>,
    /// How the runner logs in (`--sasl-mech`).
    pub login: LoginMech,
}

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Login credentials.
    pub creds: Credentials,
    /// Default per-expectation timeout.
    pub timeout: Duration,
    /// Upper bound on every expectation's timeout, even a case's own `timeout:` (mutant runs).
    pub max_timeout: Option<Duration>,
    /// Cases run at once.
    pub jobs: usize,
    /// Run id: 6 hex digits, part of every unique name.
    pub run_id: String,
    /// `--skip` patterns: matching cases are not run and are reported NOT-RUN "skipped by the
    /// user" (for servers that crash on some inputs and must not be fed them in a run).
    pub skip: Vec<String>,
}

/// A MUPDATE server's role from its banner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `"(master)"`.
    Master,
    /// An `mupdate://` URL.
    Slave,
    /// IMAP, or an unreadable banner.
    Unknown,
}

/// What the target offers, learned once per suite by [`probe::probe`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct TargetInfo {
    /// Which protocol it speaks.
    pub protocol: Protocol,
    /// MUPDATE master or slave.
    pub role: Role,
    /// Capabilities (IMAP) or banner line names (MUPDATE), upper case.
    pub caps: BTreeSet<String>,
    /// SASL mechanisms, upper case.
    pub mechs: BTreeSet<String>,
    /// STARTTLS advertised on a plain connection.
    pub starttls: bool,
    /// The greeting as text: IMAP's first line, MUPDATE's `* OK MUPDATE` banner line.
    pub greeting: String,
    /// Why the second user could not log in, if it could not (its cases are then N/A).
    pub user2_refused: Option<String>,
    /// How the runner logs in (the target's `--sasl-mech`, copied by the probe); shown in
    /// reports only when not PLAIN.
    #[serde(skip_serializing_if = "LoginMech::is_plain")]
    pub login: LoginMech,
}

impl TargetInfo {
    /// `NAME` is advertised: in the capabilities (IMAP) or as a banner line (MUPDATE, where the
    /// `* STARTTLS` line is kept as [`TargetInfo::starttls`]).
    pub fn advertises(&self, name: &str) -> bool {
        self.caps.contains(name) || (name == "STARTTLS" && self.starttls)
    }
}

/// Why a case cannot run here: the first unmet need.
pub fn unmet_need(
    needs: &[Need],
    info: &TargetInfo,
    target: &Target,
    creds: &Credentials,
) -> Option<String> {
    for n in needs {
        let met = match n {
            Need::Master => info.role == Role::Master,
            Need::Slave => info.role == Role::Slave,
            Need::Admin => creds.user.is_some(),
            Need::User2 => creds.user2.is_some() && info.user2_refused.is_none(),
            Need::Starttls => info.starttls && target.tls_mode == TlsMode::Plain,
            Need::NoStarttls => !info.starttls,
            Need::Plaintext => target.tls_mode == TlsMode::Plain,
            Need::Capability(c) => info.advertises(c),
            Need::Mechanism(m) => {
                info.mechs.contains(m) && !(password_mech(m) && no_password(info, creds))
            }
            Need::Login(m) => info.login.name() == m,
            Need::NoCapability(c) => !info.advertises(c),
            Need::MasterPeer => target.master.is_some(),
        };
        if !met {
            return Some(match n {
                Need::Admin => "no --user/--password given".to_string(),
                Need::User2 => match &info.user2_refused {
                    Some(why) => format!("the second user cannot log in: {why}"),
                    None => "no --user2/--password2 given".to_string(),
                },
                Need::MasterPeer => {
                    "no --master given (the master of the slave under test)".to_string()
                }
                Need::NoCapability(c) => format!("target advertises {c}"),
                Need::Mechanism(m) if info.mechs.contains(m) => {
                    format!("`{n}` needs a password (--sasl-mech GSSAPI without --password)")
                }
                Need::Login(m) => format!(
                    "the run logs in with {} (--sasl-mech {m})",
                    info.login.name()
                ),
                _ => format!("target lacks `{n}`"),
            });
        }
    }
    None
}

/// Whether a mechanism sends the password (`$plain` and friends).
fn password_mech(m: &str) -> bool {
    m == "PLAIN" || m == "LOGIN"
}

/// A run logging in without a password (GSSAPI, no `--password`): cases that send one are N/A.
fn no_password(info: &TargetInfo, creds: &Credentials) -> bool {
    !info.login.is_plain() && creds.user.as_ref().is_none_or(|(_, p)| p.is_empty())
}
