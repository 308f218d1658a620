//! Per-connection MUPDATE protocol states (RFC 3656 section 4) and which commands each admits.
//!
//! The database semantics live in [`crate::mailbox_db`]; this module says whether a command may
//! run at all, so that the servers and the conformance runner agree on the session rules.

/// The command words of RFC 3656 section 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandKind {
    /// ACTIVATE (4.1).
    Activate,
    /// AUTHENTICATE (4.2).
    Authenticate,
    /// DEACTIVATE (4.3).
    Deactivate,
    /// DELETE (4.4).
    Delete,
    /// FIND (4.5).
    Find,
    /// LIST (4.6).
    List,
    /// LOGOUT (4.7).
    Logout,
    /// NOOP (4.8).
    Noop,
    /// RESERVE (4.9).
    Reserve,
    /// STARTTLS (4.10).
    Starttls,
    /// UPDATE (4.11).
    Update,
}

impl CommandKind {
    /// Every command word.
    pub const ALL: [CommandKind; 11] = [
        CommandKind::Activate,
        CommandKind::Authenticate,
        CommandKind::Deactivate,
        CommandKind::Delete,
        CommandKind::Find,
        CommandKind::List,
        CommandKind::Logout,
        CommandKind::Noop,
        CommandKind::Reserve,
        CommandKind::Starttls,
        CommandKind::Update,
    ];

    /// The command word as sent on the wire (case-insensitive on input).
    pub fn word(self) -> &'static str {
        match self {
            CommandKind::Activate => "ACTIVATE",
            CommandKind::Authenticate => "AUTHENTICATE",
            CommandKind::Deactivate => "DEACTIVATE",
            CommandKind::Delete => "DELETE",
            CommandKind::Find => "FIND",
            CommandKind::List => "LIST",
            CommandKind::Logout => "LOGOUT",
            CommandKind::Noop => "NOOP",
            CommandKind::Reserve => "RESERVE",
            CommandKind::Starttls => "STARTTLS",
            CommandKind::Update => "UPDATE",
        }
    }

    /// Parse a command word, case-insensitively (RFC 3656 section 5).
    pub fn from_word(word: &[u8]) -> Option<CommandKind> {
        CommandKind::ALL
            .into_iter()
            .find(|k| k.word().as_bytes().eq_ignore_ascii_case(word))
    }

    /// True for the commands that change the database; a slave refuses them.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            CommandKind::Activate
                | CommandKind::Reserve
                | CommandKind::Deactivate
                | CommandKind::Delete
        )
    }
}

/// Where a connection is in its life (RFC 3656 section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SessionState {
    /// Before a successful AUTHENTICATE: only AUTHENTICATE, STARTTLS and LOGOUT.
    NotAuthenticated,
    /// After AUTHENTICATE.
    Authenticated,
    /// After UPDATE: only NOOP and LOGOUT (4.11).
    Streaming,
}

/// How a session must answer a command it may not run now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// The command runs.
    Run,
    /// Refused with NO (the RFC's SHOULD for commands before authentication, 4).
    No,
    /// Refused with NO or BAD (both are acceptable refusals of the RFC's "may only issue").
    NoOrBad,
}

/// Whether `kind` may run in `state` on a server of the given role (RFC 3656 4, 4.1-4.11).
///
/// * Before authentication only AUTHENTICATE, STARTTLS and LOGOUT run; the rest MUST NOT be
///   accepted and SHOULD get NO.
/// * A second AUTHENTICATE after success is refused (4.2: only one per session).
/// * While streaming only NOOP and LOGOUT run (4.11).
/// * STARTTLS is only valid before authentication (4.10).
/// * Writes are refused on a slave (4.1, 4.3, 4.4, 4.9 "MUST NOT be issued to a slave").
pub fn verdict(state: SessionState, kind: CommandKind, is_slave: bool) -> Verdict {
    use CommandKind as K;
    match state {
        SessionState::NotAuthenticated => match kind {
            K::Authenticate | K::Starttls | K::Logout => Verdict::Run,
            _ => Verdict::No,
        },
        SessionState::Authenticated => match kind {
            K::Authenticate | K::Starttls => Verdict::NoOrBad,
            k if k.is_write() && is_slave => Verdict::NoOrBad,
            _ => Verdict::Run,
        },
        SessionState::Streaming => match kind {
            K::Noop | K::Logout => Verdict::Run,
            _ => Verdict::NoOrBad,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_case_insensitively() {
        for k in CommandKind::ALL {
            assert_eq!(CommandKind::from_word(k.word().as_bytes()), Some(k));
            assert_eq!(
                CommandKind::from_word(k.word().to_ascii_lowercase().as_bytes()),
                Some(k)
            );
        }
        assert_eq!(CommandKind::from_word(b"CAPABILITY"), None);
    }

    #[test]
    fn only_three_commands_before_login() {
        let run: Vec<_> = CommandKind::ALL
            .into_iter()
            .filter(|&k| verdict(SessionState::NotAuthenticated, k, false) == Verdict::Run)
            .collect();
        assert_eq!(
            run,
            vec![
                CommandKind::Authenticate,
                CommandKind::Logout,
                CommandKind::Starttls
            ]
        );
    }

    #[test]
    fn streaming_admits_noop_and_logout_only() {
        let run: Vec<_> = CommandKind::ALL
            .into_iter()
            .filter(|&k| verdict(SessionState::Streaming, k, false) == Verdict::Run)
            .collect();
        assert_eq!(run, vec![CommandKind::Logout, CommandKind::Noop]);
    }

    #[test]
    fn slaves_refuse_writes() {
        for k in CommandKind::ALL {
            let v = verdict(SessionState::Authenticated, k, true);
            assert_eq!(
                v == Verdict::NoOrBad,
                k.is_write() || matches!(k, CommandKind::Authenticate | CommandKind::Starttls)
            );
        }
    }
}
