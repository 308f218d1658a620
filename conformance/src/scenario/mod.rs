//! Scenario files (`scenarios/*.scn`): their syntax tree ([`Scenario`], [`Step`]), the parser
//! ([`parse`]), templates and patterns, and the oracle validator ([`validate`]).
//!
//! The format is specified for scenario authors in `scenarios/README.md`.

pub mod imap_oracle;
pub mod names;
pub mod oracle;
pub mod parse;
pub mod pattern;
pub mod template;
pub mod validate;

use std::fmt;

pub use parse::{ParseError, parse_scenario};
use pattern::Pattern;
use template::Template;

/// Which suite a case belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// RFC 3656.
    Mupdate,
    /// IMAP with MULTIAPPEND (RFC 3502).
    Imap,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Mupdate => "mupdate",
            Protocol::Imap => "imap",
        })
    }
}

/// Requirement level of a case (README section 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// An RFC MUST: failure is FAIL.
    Must,
    /// Survival under hostile input: failure is FAIL.
    Robustness,
    /// An RFC SHOULD: failure is NON-STRICT.
    Should,
    /// An RFC MAY: failure is NON-STRICT.
    May,
}

impl Level {
    /// True when a failure of this level fails the run.
    pub fn is_required(self) -> bool {
        matches!(self, Level::Must | Level::Robustness)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Must => "MUST",
            Level::Robustness => "ROBUSTNESS",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        })
    }
}

/// Something a case needs from the target (README section 1).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Need {
    /// A MUPDATE master.
    Master,
    /// A MUPDATE slave.
    Slave,
    /// Credentials of the main user (an admin for MUPDATE).
    Admin,
    /// Credentials of a second user.
    User2,
    /// STARTTLS advertised and the run not under implicit TLS.
    Starttls,
    /// STARTTLS not advertised.
    NoStarttls,
    /// A plain TCP run (neither `--tls` nor `--starttls`).
    Plaintext,
    /// A capability (IMAP) or banner line (MUPDATE).
    Capability(String),
    /// A SASL mechanism.
    Mechanism(String),
    /// A capability (IMAP) or banner line (MUPDATE) that must **not** be advertised
    /// (`nocap:NAME`).
    NoCapability(String),
    /// The master of the slave under test, given with `--master` (`needs: slave master`); the
    /// case opens connections to it with `open NAME master`.
    MasterPeer,
    /// The runner logs in with this SASL mechanism (`--sasl-mech`), e.g. `login:GSSAPI`.
    Login(String),
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::Master => f.write_str("master"),
            Need::Slave => f.write_str("slave"),
            Need::Admin => f.write_str("admin"),
            Need::User2 => f.write_str("user2"),
            Need::Starttls => f.write_str("starttls"),
            Need::NoStarttls => f.write_str("nostarttls"),
            Need::Plaintext => f.write_str("plaintext"),
            Need::Capability(c) => write!(f, "cap:{c}"),
            Need::Mechanism(m) => write!(f, "mech:{m}"),
            Need::NoCapability(c) => write!(f, "nocap:{c}"),
            Need::MasterPeer => f.write_str("master (--master)"),
            Need::Login(m) => write!(f, "login:{m}"),
        }
    }
}

/// The header of a case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Unique id (`mupdate/reserve-new`).
    pub id: String,
    /// What must happen.
    pub title: String,
    /// Suite.
    pub protocol: Protocol,
    /// RFC references, primary first (`RFC3656 4.9`).
    pub rfc: Vec<String>,
    /// Requirement level.
    pub level: Level,
    /// Target requirements.
    pub needs: Vec<Need>,
    /// Per-expectation timeout in seconds, if the case sets one.
    pub timeout: Option<u64>,
    /// Free text shown with failures.
    pub note: Option<String>,
}

/// How `open` treats the greeting and login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read the greeting, log in as the main user.
    Login,
    /// Read the greeting, log in as the second user.
    LoginUser2,
    /// Read the greeting only.
    NoAuth,
    /// Read nothing.
    Raw,
}

/// One step of a case.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// 1-based line in the file.
    pub line: usize,
    /// What to do.
    pub kind: StepKind,
}

/// The steps of README section 3.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    /// `open c1 [master] [user2|noauth|raw]`.
    Open {
        /// Connection name.
        conn: String,
        /// Greeting and login handling.
        mode: OpenMode,
        /// Connect to the master of the slave under test (`--master`) instead of the target.
        master: bool,
    },
    /// `login c1 [user2]`.
    Login {
        /// Connection name.
        conn: String,
        /// Log in as the second user.
        user2: bool,
    },
    /// `starttls c1`.
    StartTls {
        /// Connection name.
        conn: String,
    },
    /// `tls c1`.
    Tls {
        /// Connection name.
        conn: String,
    },
    /// `close c1`.
    Close {
        /// Connection name.
        conn: String,
    },
    /// `c1 > TEXT` (crlf) or `c1 >> BYTES`.
    Send {
        /// Connection name.
        conn: String,
        /// The bytes.
        text: Template,
        /// Append CRLF (and set `$tag`).
        crlf: bool,
    },
    /// `c1 >! COMMAND`.
    SendJudged {
        /// Connection name.
        conn: String,
        /// The command line.
        text: Template,
    },
    /// `c1 < PATTERN [or closed]`.
    Expect {
        /// Connection name.
        conn: String,
        /// Pattern.
        pattern: Pattern,
        /// `or closed`: the server closing the connection instead also passes.
        or_closed: bool,
    },
    /// `c1 << PATTERN [or closed]`.
    Eventually {
        /// Connection name.
        conn: String,
        /// Pattern.
        pattern: Pattern,
        /// `or closed`: the server closing the connection instead also passes.
        or_closed: bool,
    },
    /// `lacks c1 PATTERN`: after a NOOP barrier round-trip on `c1`, no line received on `c1`
    /// during the case (the barrier's drain included) matches `PATTERN`.
    Lacks {
        /// Connection name.
        conn: String,
        /// The pattern no line may match.
        pattern: Pattern,
    },
    /// `last NAME PATTERN`: the last line of the set `NAME`, or the most recent line received on
    /// the connection `NAME`, matches `PATTERN`.
    Last {
        /// Set or connection name.
        name: String,
        /// `NAME` is a connection (else a set).
        conn: bool,
        /// Pattern.
        pattern: Pattern,
    },
    /// `c1 <= BYTES`.
    ExpectExact {
        /// Connection name.
        conn: String,
        /// The exact line.
        text: Template,
    },
    /// `c1 <~ REGEX`.
    ExpectRegex {
        /// Connection name.
        conn: String,
        /// The regex source (only `${...}` expands).
        regex: Template,
    },
    /// `c1 closed`.
    Closed {
        /// Connection name.
        conn: String,
    },
    /// `c1 silent`.
    Silent {
        /// Connection name.
        conn: String,
    },
    /// `c1 settle`: wait until the server has reacted to what was sent (a tagged completion or
    /// `* BYE` arrives, or the connection closes); silence for the whole timeout also passes
    /// (the server is still reading a literal). Never fails except on I/O errors.
    Settle {
        /// Connection name.
        conn: String,
    },
    /// `c1 unordered` ... `end`.
    Unordered {
        /// Connection name.
        conn: String,
        /// One pattern per expected line.
        patterns: Vec<Pattern>,
    },
    /// `c1 collect NAME [mine] until PATTERN`.
    Collect {
        /// Connection name.
        conn: String,
        /// Set name.
        name: String,
        /// Keep only lines about this case's names.
        mine: bool,
        /// The line that ends the collection.
        until: Pattern,
    },
    /// `same A B`.
    Same {
        /// First set.
        a: String,
        /// Second set.
        b: String,
    },
    /// `count NAME N`.
    Count {
        /// Set.
        name: String,
        /// Expected number of lines.
        n: usize,
    },
    /// `has NAME PATTERN`.
    Has {
        /// Set.
        name: String,
        /// Pattern one line must match.
        pattern: Pattern,
    },
    /// `race` ... `end`.
    Race {
        /// `(connection, command line, file line)` in order.
        sends: Vec<(String, Template, usize)>,
    },
}

impl StepKind {
    /// The connection the step works on, if any.
    pub fn conn(&self) -> Option<&str> {
        use StepKind as S;
        match self {
            S::Open { conn, .. }
            | S::Login { conn, .. }
            | S::StartTls { conn }
            | S::Tls { conn }
            | S::Close { conn }
            | S::Send { conn, .. }
            | S::SendJudged { conn, .. }
            | S::Expect { conn, .. }
            | S::Eventually { conn, .. }
            | S::ExpectExact { conn, .. }
            | S::ExpectRegex { conn, .. }
            | S::Closed { conn }
            | S::Silent { conn }
            | S::Settle { conn }
            | S::Unordered { conn, .. }
            | S::Collect { conn, .. }
            | S::Lacks { conn, .. } => Some(conn),
            S::Last {
                name, conn: true, ..
            } => Some(name),
            S::Same { .. } | S::Count { .. } | S::Has { .. } | S::Last { .. } | S::Race { .. } => {
                None
            }
        }
    }
}

impl Scenario {
    /// Every step, setup, test and cleanup in order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.setup.iter().chain(&self.test).chain(&self.cleanup)
    }

    /// The declared needs plus those the steps imply: a logged-in `open` or `login` needs the
    /// main user (`admin`), one as `user2` needs the second user, `open NAME master` needs the
    /// master (`--master`). A run without those
    /// credentials grades the case N/A instead of failing it.
    pub fn effective_needs(&self) -> Vec<Need> {
        let mut needs = self.meta.needs.clone();
        for s in self.steps() {
            let implied = match &s.kind {
                StepKind::Open {
                    mode: OpenMode::Login,
                    ..
                }
                | StepKind::Login { user2: false, .. } => Some(Need::Admin),
                StepKind::Open {
                    mode: OpenMode::LoginUser2,
                    ..
                }
                | StepKind::Login { user2: true, .. } => Some(Need::User2),
                _ => None,
            };
            let on_master =
                matches!(s.kind, StepKind::Open { master: true, .. }).then_some(Need::MasterPeer);
            for n in [implied, on_master].into_iter().flatten() {
                if !needs.contains(&n) {
                    needs.push(n);
                }
            }
        }
        needs
    }
}

/// A parsed case.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Header.
    pub meta: Meta,
    /// `[setup]` steps.
    pub setup: Vec<Step>,
    /// `[test]` steps.
    pub test: Vec<Step>,
    /// `[cleanup]` steps.
    pub cleanup: Vec<Step>,
    /// Where the file came from (for messages).
    pub path: String,
    /// The file's text (for bundles).
    pub source: String,
}
