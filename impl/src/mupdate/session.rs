//! Per-connection MUPDATE protocol state (RFC 3656 section 4), sans-IO.
//!
//! [`Session::on_event`] turns each decoder [`Event`] into an [`Action`]: bytes to send at once,
//! or an effect the transport must carry out (run a database command, authenticate, start TLS,
//! start an UPDATE stream, a NOOP barrier, logout). Which commands may run in which state comes
//! from the oracle ([`murder_model::session::verdict`]); database semantics come from
//! [`murder_model::mailbox_db`]; this file only adds the choices that belong to a connection:
//!
//! * Before AUTHENTICATE: NO for every known command except AUTHENTICATE, STARTTLS and LOGOUT,
//!   and no `+ go ahead` for their synchronizing literals. Unknown command words: BAD.
//! * Writes are refused with NO on a slave (read-only) and for identities that are not admins
//!   (when an admin list is configured; without one, every authenticated user may write, as in
//!   RFC 3656 section 7).
//! * While streaming (after UPDATE) only NOOP and LOGOUT run; everything else gets NO. A plain
//!   UPDATE is never refused.

use murder_model::mailbox_db::{Change, Command, MailboxEntry, Refusal, Reply};
use murder_model::session::{CommandKind, SessionState, Verdict, verdict};

use super::codec::{DecodeError, Event, RawCommand};
use super::command::{self, Request};
use super::faults::{Fault, Faults};
use super::response::{self, Status, Tag};

/// Whether this server is the master or a read-only slave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The authoritative master.
    Master,
    /// A slave replicating from `master` (`host:port`).
    Slave {
        /// The master's `host:port`.
        master: String,
    },
}

impl Role {
    /// The banner's master/slave indication: `(master)` or `mupdate://host:port/` (RFC 3656 3.8).
    pub fn banner_text(&self) -> String {
        match self {
            Role::Master => "(master)".to_string(),
            Role::Slave { master } => format!("mupdate://{master}/"),
        }
    }
}

/// What a connection is allowed and configured to do; shared by all sessions of a server.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Master or slave.
    pub role: Role,
    /// Identities allowed to write; empty means every authenticated identity may.
    pub admins: Vec<String>,
    /// STARTTLS is configured.
    pub tls_available: bool,
    /// AUTHENTICATE only under TLS: before STARTTLS the banner lists no mechanism and
    /// AUTHENTICATE gets `NO "TLS required"` (never a `+ go ahead` for its literal).
    pub require_tls: bool,
    /// Deliberate bugs (empty in production).
    pub faults: Faults,
}

/// What the transport must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes (possibly none) and keep reading.
    Send(Vec<u8>),
    /// Send `+ go ahead` (unless the bytes are empty) and call `Decoder::accept_literal`.
    GoAhead(Vec<u8>),
    /// Send these bytes and call `Decoder::refuse_literal`.
    RefuseLiteral(Vec<u8>),
    /// Run a database command, then send [`Session::reply`] of its result.
    Execute {
        /// The command's tag.
        tag: Vec<u8>,
        /// The command.
        command: Command,
    },
    /// Run a SASL exchange; finish it with [`Session::authenticated`] or [`Session::auth_failed`].
    Authenticate {
        /// The command's tag.
        tag: Vec<u8>,
        /// Mechanism name, upper case.
        mechanism: String,
        /// Base64 initial response, if any.
        initial: Option<Vec<u8>>,
    },
    /// Send these bytes (the OK), discard buffered input, do the TLS handshake, then send
    /// [`Session::banner`].
    StartTls(Vec<u8>),
    /// Subscribe to changes, send the snapshot with [`Session::update_dump`], then stream.
    Update {
        /// The UPDATE's tag (every streamed line carries it).
        tag: Vec<u8>,
    },
    /// NOOP while streaming: send every change committed so far, then these bytes (the OK).
    Barrier(Vec<u8>),
    /// Send these bytes (the BYE) and close.
    Close(Vec<u8>),
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Session {
    policy: std::sync::Arc<Policy>,
    state: SessionState,
    tls_active: bool,
    identity: Option<String>,
    may_write: bool,
    update_tag: Option<Vec<u8>>,
}

fn line(tag: Tag<'_>, status: Status, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    response::status(&mut out, tag, status, text);
    out
}

impl Session {
    /// A new, unauthenticated session.
    pub fn new(policy: std::sync::Arc<Policy>) -> Self {
        Session {
            policy,
            state: SessionState::NotAuthenticated,
            tls_active: false,
            identity: None,
            may_write: false,
            update_tag: None,
        }
    }

    /// The protocol state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The authenticated identity, if any.
    pub fn identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The tag of the running UPDATE, if streaming.
    pub fn update_tag(&self) -> Option<&[u8]> {
        self.update_tag.as_deref()
    }

    /// The policy this session follows.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The capability banner (RFC 3656 3.8); `* STARTTLS` only while TLS is possible and off;
    /// no mechanism in `* AUTH` while TLS is required and off.
    pub fn banner(&self, host: &str, mechanisms: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mechanisms = if self.tls_missing() { &[] } else { mechanisms };
        response::banner(
            &mut out,
            &response::Banner {
                mechanisms,
                starttls: self.policy.tls_available && !self.tls_active,
                host,
                role: &self.policy.role.banner_text(),
            },
        );
        out
    }

    /// The TLS handshake succeeded.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
    }

    /// True once TLS is active.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// True while TLS is required and not yet active.
    fn tls_missing(&self) -> bool {
        self.policy.require_tls && !self.tls_active
    }

    /// AUTHENTICATE succeeded as `identity`: the OK to send.
    pub fn authenticated(&mut self, tag: &[u8], identity: &str) -> Vec<u8> {
        self.state = SessionState::Authenticated;
        self.may_write =
            self.policy.admins.is_empty() || self.policy.admins.iter().any(|a| a == identity);
        self.identity = Some(identity.to_string());
        line(Tag::Tagged(tag), Status::Ok, "Authenticated")
    }

    /// AUTHENTICATE failed: the NO to send.
    pub fn auth_failed(&mut self, tag: &[u8], why: &str) -> Vec<u8> {
        if self.policy.faults.has(Fault::AcceptAfterFailedAuth) {
            self.state = SessionState::Authenticated;
            self.may_write = true;
        }
        line(Tag::Tagged(tag), Status::No, why)
    }

    /// UPDATE started: later lines carry `tag`.
    pub fn streaming(&mut self, tag: &[u8]) {
        self.state = SessionState::Streaming;
        self.update_tag = Some(tag.to_vec());
    }

    fn data_tag<'a>(&self, tag: &'a [u8]) -> Tag<'a> {
        if self.policy.faults.has(Fault::UntaggedData) {
            Tag::Untagged
        } else {
            Tag::Tagged(tag)
        }
    }

    /// Answer to a decoder event.
    pub fn on_event(&mut self, event: Event) -> Action {
        match event {
            Event::Command(raw) => self.on_command(raw),
            Event::Error(e) => Action::Send(self.syntax_error(&e)),
            Event::LiteralRequest { tag, word, .. } => self.on_literal_request(&tag, &word),
            // A SASL line outside an exchange cannot happen; answer it as a broken command.
            Event::SaslLine(_) => Action::Send(line(Tag::Untagged, Status::Bad, "Need command")),
        }
    }

    /// The BAD for a broken command.
    pub fn syntax_error(&self, e: &DecodeError) -> Vec<u8> {
        let tag = e.tag.as_deref().map_or(Tag::Untagged, Tag::Tagged);
        line(tag, Status::Bad, &e.error.to_string())
    }

    /// Why `kind` may not run now, as the refusal to send; None when it may.
    fn refusal(&self, tag: &[u8], kind: CommandKind) -> Option<Vec<u8>> {
        let t = Tag::Tagged(tag);
        let state = self.state;
        let is_slave = matches!(self.policy.role, Role::Slave { .. });
        match verdict(state, kind, is_slave) {
            Verdict::Run => {}
            // Deliberate bug: run what must be refused before login.
            Verdict::No if self.policy.faults.has(Fault::CommandsBeforeLogin) => {}
            Verdict::No => return Some(line(t, Status::No, "Please login first")),
            // Deliberate bug: STARTTLS in the authenticated state.
            Verdict::NoOrBad
                if kind == CommandKind::Starttls
                    && state == SessionState::Authenticated
                    && self.policy.faults.has(Fault::StarttlsAfterAuth) => {}
            Verdict::NoOrBad => {
                let text = match (state, kind) {
                    (SessionState::Streaming, _) => "not legal when streaming".to_string(),
                    (_, CommandKind::Authenticate) => "already authenticated".to_string(),
                    (_, CommandKind::Starttls) if self.tls_active => {
                        "TLS already active".to_string()
                    }
                    (_, CommandKind::Starttls) => {
                        "STARTTLS not allowed after authentication".into()
                    }
                    _ => match &self.policy.role {
                        Role::Slave { master } => {
                            format!("read-only: this is a slave, write to {master}")
                        }
                        Role::Master => "not allowed".to_string(),
                    },
                };
                return Some(line(t, Status::No, &text));
            }
        }
        if kind == CommandKind::Starttls {
            if !self.policy.tls_available {
                return Some(line(t, Status::Bad, "STARTTLS not supported"));
            }
            if self.tls_active {
                return Some(line(t, Status::No, "TLS already active"));
            }
        }
        if kind == CommandKind::Authenticate && self.tls_missing() {
            return Some(line(t, Status::No, "TLS required"));
        }
        if kind.is_write() && !self.may_write && state != SessionState::NotAuthenticated {
            return Some(line(t, Status::No, "permission denied"));
        }
        None
    }

    fn on_literal_request(&mut self, tag: &[u8], word: &[u8]) -> Action {
        let Some(kind) = CommandKind::from_word(word) else {
            return Action::RefuseLiteral(line(
                Tag::Tagged(tag),
                Status::Bad,
                "Unrecognized command",
            ));
        };
        if let Some(refusal) = self.refusal(tag, kind) {
            return Action::RefuseLiteral(refusal);
        }
        if matches!(
            kind,
            CommandKind::Noop | CommandKind::Logout | CommandKind::Starttls | CommandKind::Update
        ) {
            return Action::RefuseLiteral(line(Tag::Tagged(tag), Status::Bad, "Extra arguments"));
        }
        if self.policy.faults.has(Fault::SyncLiteralNoContinuation) {
            Action::GoAhead(Vec::new())
        } else {
            Action::GoAhead(response::GO_AHEAD.to_vec())
        }
    }

    fn on_command(&mut self, raw: RawCommand) -> Action {
        let mut tag = raw.tag.clone();
        if self.policy.faults.has(Fault::TagTruncated) {
            tag.truncate(10);
        }
        let t = Tag::Tagged(&tag);
        let Some(kind) = CommandKind::from_word(&raw.word) else {
            return Action::Send(line(t, Status::Bad, "Unrecognized command"));
        };
        if let Some(refusal) = self.refusal(&tag, kind) {
            return Action::Send(refusal);
        }
        let request = match command::parse(kind, &raw) {
            Ok(r) => r,
            Err(e) => return Action::Send(line(t, Status::Bad, &e.to_string())),
        };
        match request {
            Request::Authenticate { mechanism, initial } => Action::Authenticate {
                tag,
                mechanism,
                initial,
            },
            Request::Db(mut command) => {
                if self.policy.faults.has(Fault::ListIgnoresPrefix)
                    && let Command::List { prefix } = &mut command
                {
                    *prefix = None;
                }
                if self.policy.faults.has(Fault::NamesCaseInsensitive) {
                    fold_names(&mut command);
                }
                if self.policy.faults.has(Fault::DeactivateDeletes)
                    && let Command::Deactivate { name, .. } = &command
                {
                    command = Command::Delete { name: name.clone() };
                }
                Action::Execute { tag, command }
            }
            Request::Noop if self.state == SessionState::Streaming => {
                if self.policy.faults.has(Fault::StreamTagFollowsNoop) {
                    self.update_tag = Some(tag.clone());
                }
                Action::Barrier(line(t, Status::Ok, "NOOP complete"))
            }
            Request::Noop => Action::Send(line(t, Status::Ok, "NOOP complete")),
            Request::Logout if self.policy.faults.has(Fault::LogoutOk) => {
                Action::Close(line(t, Status::Ok, "bye-bye"))
            }
            Request::Logout => Action::Close(line(t, Status::Bye, "User logged out")),
            Request::Starttls => Action::StartTls(line(t, Status::Ok, "Begin TLS negotiation now")),
            Request::Update if self.policy.faults.has(Fault::UpdateRefused) => {
                Action::Send(line(t, Status::No, "UPDATE refused"))
            }
            Request::Update => Action::Update { tag },
        }
    }

    /// The response to a database command's result: data lines tagged with `tag`, then OK/NO.
    pub fn reply(&self, tag: &[u8], command: &Command, reply: &Reply) -> Vec<u8> {
        let mut out = Vec::new();
        let faults = &self.policy.faults;
        for r in &reply.data {
            if faults.has(Fault::FindReturnsReserveAsMailbox)
                && matches!(command, Command::Find { .. })
                && let MailboxEntry::Reserved { location } = &r.entry
            {
                let mut r = r.clone();
                r.entry = MailboxEntry::Active {
                    location: location.clone(),
                    acl: Vec::new(),
                };
                response::record(&mut out, self.data_tag(tag), &r);
                continue;
            }
            response::record(&mut out, self.data_tag(tag), r);
        }
        let forced_ok = match (command, reply.result) {
            (Command::Reserve { .. }, Err(Refusal::AlreadyExists)) => {
                faults.has(Fault::ReserveAlwaysOk)
            }
            (Command::Delete { .. }, Err(Refusal::NoSuchMailbox)) => {
                faults.has(Fault::DeleteMissingOk)
            }
            (Command::Deactivate { .. }, Err(Refusal::NoSuchMailbox)) => {
                faults.has(Fault::DeactivateMissingOk)
            }
            _ => false,
        };
        let t = Tag::Tagged(tag);
        match reply.result {
            Ok(()) => {
                let text = match command {
                    Command::Find { .. } => "Search completed",
                    Command::List { .. } => "List complete",
                    _ => "done",
                };
                response::status(&mut out, t, Status::Ok, text);
            }
            Err(_) if forced_ok => response::status(&mut out, t, Status::Ok, "done"),
            Err(refusal) => response::status(&mut out, t, Status::No, &refusal.to_string()),
        }
        out
    }

    /// UPDATE's initial dump (RFC 3656 4.11): the records, then the OK that starts streaming.
    pub fn update_dump(&self, tag: &[u8], records: &[murder_model::Record]) -> Vec<u8> {
        let mut out = self.update_opening(tag);
        for r in records {
            self.dump_record(&mut out, tag, r);
        }
        out.extend(self.update_started(tag));
        out
    }

    /// What UPDATE sends before its initial dump: nothing (the `UpdateOkBeforeDump` fault
    /// sends the OK here instead of after the dump).
    pub fn update_opening(&self, tag: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.policy.faults.has(Fault::UpdateOkBeforeDump) {
            response::status(&mut out, Tag::Tagged(tag), Status::Ok, "streaming starts");
        }
        out
    }

    /// One record of UPDATE's initial dump (the `UpdateDumpOmitsReserved` fault skips
    /// reservations).
    pub fn dump_record(&self, out: &mut Vec<u8>, tag: &[u8], record: &murder_model::Record) {
        if self.policy.faults.has(Fault::UpdateDumpOmitsReserved)
            && matches!(record.entry, MailboxEntry::Reserved { .. })
        {
            return;
        }
        self.data_record(out, tag, record);
    }

    /// One data line of a LIST answer or of UPDATE's initial dump, appended to `out` (for
    /// servers that format a large answer straight from a snapshot instead of a `Vec<Record>`).
    pub fn data_record(&self, out: &mut Vec<u8>, tag: &[u8], record: &murder_model::Record) {
        response::record(out, self.data_tag(tag), record);
    }

    /// The OK that ends UPDATE's initial dump and starts streaming.
    pub fn update_started(&self, tag: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.policy.faults.has(Fault::UpdateOkBeforeDump) {
            return out;
        }
        response::status(&mut out, Tag::Tagged(tag), Status::Ok, "streaming starts");
        out
    }

    /// One streamed change, tagged with the UPDATE's tag (nothing when not streaming).
    pub fn stream_change(&self, change: &Change) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(tag) = &self.update_tag {
            if self.policy.faults.has(Fault::DropStreamDeletes)
                && matches!(change, Change::Delete { .. })
            {
                return out;
            }
            if self.policy.faults.has(Fault::ReserveNotStreamed)
                && let Change::Upsert(r) = change
                && matches!(r.entry, MailboxEntry::Reserved { .. })
            {
                return out;
            }
            if self.policy.faults.has(Fault::StreamDropsAcl)
                && let Change::Upsert(r) = change
                && let MailboxEntry::Active { location, .. } = &r.entry
            {
                let mut r = r.clone();
                r.entry = MailboxEntry::Active {
                    location: location.clone(),
                    acl: Vec::new(),
                };
                response::record(&mut out, self.data_tag(tag), &r);
                return out;
            }
            response::change(&mut out, self.data_tag(tag), change);
        }
        out
    }
}

/// The `NamesCaseInsensitive` fault: fold the command's mailbox name to lower case.
fn fold_names(command: &mut Command) {
    match command {
        Command::Activate { name, .. }
        | Command::Reserve { name, .. }
        | Command::Deactivate { name, .. }
        | Command::Delete { name }
        | Command::Find { name } => name.make_ascii_lowercase(),
        _ => {}
    }
}

/// `* BYE "<why>"`: the untagged goodbye before a forced close.
pub fn bye(why: &str) -> Vec<u8> {
    line(Tag::Untagged, Status::Bye, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mupdate::codec::{Decoder, Token};
    use crate::mupdate::config::Limits;
    use bytes::BytesMut;
    use murder_model::MailboxDb;
    use std::sync::Arc;

    fn policy(role: Role, admins: &[&str], faults: Faults) -> Arc<Policy> {
        Arc::new(Policy {
            role,
            admins: admins.iter().map(|s| s.to_string()).collect(),
            tls_available: false,
            require_tls: false,
            faults,
        })
    }

    fn raw(tag: &str, word: &str, args: &[&str]) -> Event {
        Event::Command(RawCommand {
            tag: tag.into(),
            word: word.into(),
            args: args
                .iter()
                .map(|a| Token::String(a.as_bytes().to_vec()))
                .collect(),
        })
    }

    fn text(a: &Action) -> String {
        match a {
            Action::Send(b) | Action::Close(b) | Action::RefuseLiteral(b) | Action::Barrier(b) => {
                String::from_utf8_lossy(b).into_owned()
            }
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn before_login_only_three_commands() {
        let mut s = Session::new(policy(Role::Master, &[], Faults::none()));
        for (w, args) in [
            ("FIND", vec!["x"]),
            ("LIST", vec![]),
            ("NOOP", vec![]),
            ("UPDATE", vec![]),
            ("ACTIVATE", vec!["a", "b", "c"]),
            ("DELETE", vec!["a"]),
        ] {
            assert!(text(&s.on_event(raw("T", w, &args))).starts_with("T NO "));
        }
        assert!(text(&s.on_event(raw("T", "BOGUS", &[]))).starts_with("T BAD "));
        assert!(text(&s.on_event(raw("T", "STARTTLS", &[]))).starts_with("T BAD "));
        assert_eq!(
            text(&s.on_event(raw("L", "logout", &[]))),
            "L BYE \"User logged out\"\r\n"
        );
    }

    #[test]
    fn no_go_ahead_before_login() {
        let mut s = Session::new(policy(Role::Master, &[], Faults::none()));
        let mut d = Decoder::new(Limits::default());
        let mut buf = BytesMut::from(&b"X ACTIVATE {3}\r\n"[..]);
        let ev = d.decode(&mut buf).unwrap().unwrap();
        let a = s.on_event(ev);
        assert!(matches!(a, Action::RefuseLiteral(_)));
        assert!(text(&a).starts_with("X NO "));
        let a = s.on_event(Event::LiteralRequest {
            tag: b"A".to_vec(),
            word: b"AUTHENTICATE".to_vec(),
            size: 3,
        });
        assert_eq!(a, Action::GoAhead(b"+ go ahead\r\n".to_vec()));
    }

    #[test]
    fn writes_need_admin_and_master() {
        let mut s = Session::new(policy(Role::Master, &["admin"], Faults::none()));
        s.authenticated(b"A", "bob");
        assert!(
            text(&s.on_event(raw("T", "DELETE", &["x"]))).starts_with("T NO \"permission denied\"")
        );
        assert!(matches!(
            s.on_event(raw("T", "FIND", &["x"])),
            Action::Execute { .. }
        ));
        let mut s = Session::new(policy(
            Role::Slave {
                master: "m:3905".into(),
            },
            &[],
            Faults::none(),
        ));
        s.authenticated(b"A", "admin");
        assert!(text(&s.on_event(raw("T", "RESERVE", &["x", "y"]))).contains("read-only"));
        assert!(text(&s.on_event(raw("T", "AUTHENTICATE", &["PLAIN"]))).starts_with("T NO "));
    }

    #[test]
    fn streaming_admits_noop_and_logout() {
        let mut s = Session::new(policy(Role::Master, &[], Faults::none()));
        s.authenticated(b"A", "admin");
        assert_eq!(
            s.on_event(raw("U", "UPDATE", &[])),
            Action::Update { tag: b"U".to_vec() }
        );
        s.streaming(b"U");
        assert!(matches!(
            s.on_event(raw("N", "NOOP", &[])),
            Action::Barrier(_)
        ));
        for w in ["FIND", "LIST", "UPDATE", "DELETE"] {
            let args: &[&str] = if w == "FIND" || w == "DELETE" {
                &["x"]
            } else {
                &[]
            };
            assert!(text(&s.on_event(raw("T", w, args))).starts_with("T NO "));
        }
        assert!(matches!(
            s.on_event(raw("L", "LOGOUT", &[])),
            Action::Close(_)
        ));
    }

    #[test]
    fn replies_follow_the_oracle() {
        let s = Session::new(policy(Role::Master, &[], Faults::none()));
        let mut db = MailboxDb::new();
        let cmds = [
            Command::Reserve {
                name: b"a".to_vec(),
                location: b"h!p".to_vec(),
            },
            Command::Reserve {
                name: b"a".to_vec(),
                location: b"h!p".to_vec(),
            },
            Command::Find {
                name: b"a".to_vec(),
            },
            Command::Delete {
                name: b"zz".to_vec(),
            },
        ];
        let out: Vec<String> = cmds
            .iter()
            .map(|c| String::from_utf8(s.reply(b"T", c, &db.apply(c).0)).unwrap())
            .collect();
        assert_eq!(
            out,
            vec![
                "T OK \"done\"\r\n",
                "T NO \"mailbox already exists\"\r\n",
                "T RESERVE \"a\" \"h!p\"\r\nT OK \"Search completed\"\r\n",
                "T NO \"mailbox does not exist\"\r\n",
            ]
        );
    }
}
