//! The server side of the SASL mechanisms both servers offer, sans-IO.
//!
//! MUPDATE (RFC 3656 §4.2) sends challenges and responses as bare base64 lines; IMAP (RFC 3501
//! §6.2.2) as `+ base64` continuations and client lines. The protocol layer does the framing and
//! base64 ([`decode_base64_line`], [`encode_base64`], [`is_cancel`]); a [`SaslServer`] takes and
//! returns raw bytes and ends in [`SaslStep::Success`] with an [`Identity`] or
//! [`SaslStep::Failure`].
//!
//! Mechanisms:
//! * `PLAIN` (RFC 4616): `[authzid] NUL authcid NUL passwd`. Without an initial response the
//!   server sends an empty challenge. An authzid other than the authcid (proxy authorization) is
//!   allowed only for the admins of the [`AuthzPolicy`], as Cyrus lets its admins do.
//! * `LOGIN` (draft-murchison-sasl-login): challenges `Username:` then `Password:`; an initial
//!   response is taken as the user name.
//!
//! GSSAPI (which RFC 3656 §4.2 names as mandatory to implement) is `super::gssapi`, behind the
//! cargo feature `gssapi` (it links the system Kerberos library). Known gap: SCRAM-SHA-256.
//!
//! Verifying an `{ARGON2ID}` password costs one Argon2 evaluation: the protocol layer may run
//! [`SaslServer::start`]/[`SaslServer::step`] inside `tokio::task::spawn_blocking` (a
//! `SaslServer` is `Send + 'static`).

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::passwd::UserDb;

/// Longest authzid, authcid or password (in octets) a PLAIN or LOGIN exchange accepts; RFC 4616
/// §2 requires accepting up to 255.
pub const MAX_FIELD_LEN: usize = 255;

/// The challenge LOGIN sends first (draft-murchison-sasl-login §2).
pub const LOGIN_USERNAME_CHALLENGE: &[u8] = b"Username:";
/// The challenge LOGIN sends second.
pub const LOGIN_PASSWORD_CHALLENGE: &[u8] = b"Password:";

/// A SASL mechanism this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `PLAIN`, RFC 4616.
    Plain,
    /// `LOGIN`, draft-murchison-sasl-login.
    Login,
}

impl Mechanism {
    /// Every mechanism, in the order servers advertise them.
    pub const ALL: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

    /// The mechanism named `name` (case-insensitive, as RFC 4422 §3.1 says names are), if any.
    pub fn from_name(name: &[u8]) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| name.eq_ignore_ascii_case(m.name().as_bytes()))
    }

    /// The registered name, upper case.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who may act as whom.
///
/// An admin may act as any authzid, including one without an entry in the [`UserDb`] (as with
/// Cyrus proxy authorization, the identity is a name the protocol layer then uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzPolicy {
    /// Users (authcids) allowed to authorize as another identity (PLAIN authzid != authcid).
    pub admins: Vec<String>,
}

impl AuthzPolicy {
    /// Whether `user` is one of the admins.
    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.iter().any(|a| a == user)
    }

    /// A policy that lets every user of `users` act as anyone: the deliberate bug of the
    /// `PlainAuthzidUnchecked` fault switches (mupdate and imap), never a configuration.
    pub fn anyone_as_anyone(users: &UserDb) -> AuthzPolicy {
        AuthzPolicy {
            admins: users.user_names().into_iter().map(String::from).collect(),
        }
    }

    /// Whether `authcid` may act as `authzid`.
    pub fn allows(&self, authcid: &str, authzid: &str) -> bool {
        authcid == authzid || self.is_admin(authcid)
    }
}

/// The outcome of a successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The authenticated user (whose password was checked).
    pub authcid: String,
    /// The identity the session acts as: the authcid unless an admin asked for another.
    pub authzid: String,
}

/// Why an exchange failed. `Display` is a short reason safe to send to the client; it never
/// holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslFailure {
    /// Unknown user or wrong password (deliberately not told apart).
    #[error("authentication failed")]
    BadCredentials,
    /// The client's response breaks the mechanism's syntax (which rule).
    #[error("malformed response: {0}")]
    MalformedResponse(&'static str),
    /// The credentials are good but the authcid may not act as the requested authzid.
    #[error("not authorized to act as the requested identity")]
    AuthzDenied,
    /// The client cancelled the exchange (`*`, RFC 4422 §3.5).
    #[error("authentication cancelled")]
    Cancelled,
    /// `start` or `step` was called out of order (a bug in the protocol layer, or an exchange
    /// already finished).
    #[error("authentication exchange is not in progress")]
    OutOfSequence,
}

/// What the protocol layer does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send this challenge (base64 it) and pass the client's answer to [`SaslServer::step`].
    Challenge(Vec<u8>),
    /// Authenticated: the session now acts as `Identity::authzid`.
    Success(Identity),
    /// Refused; the exchange is over.
    Failure(SaslFailure),
}

/// Where an exchange is.
#[derive(Clone, PartialEq, Eq)]
enum State {
    /// `start` not called yet.
    Initial,
    /// PLAIN sent its empty challenge; awaiting the response.
    PlainAwaitingResponse,
    /// LOGIN sent `Username:`.
    LoginAwaitingUser,
    /// LOGIN sent `Password:` for this user.
    LoginAwaitingPassword(String),
    /// Success or failure was returned.
    Done,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Initial => f.write_str("Initial"),
            State::PlainAwaitingResponse => f.write_str("PlainAwaitingResponse"),
            State::LoginAwaitingUser => f.write_str("LoginAwaitingUser"),
            State::LoginAwaitingPassword(u) => write!(f, "LoginAwaitingPassword({u:?})"),
            State::Done => f.write_str("Done"),
        }
    }
}

/// One SASL exchange on the server side: create it when the client sends `AUTHENTICATE mech`,
/// call [`start`](SaslServer::start) with the initial response, then
/// [`step`](SaslServer::step) with each response until it returns success or failure.
#[derive(Debug)]
pub struct SaslServer {
    mechanism: Mechanism,
    users: Arc<UserDb>,
    policy: AuthzPolicy,
    state: State,
}

impl SaslServer {
    /// A new exchange of `mech` against `users`.
    pub fn new(mech: Mechanism, users: Arc<UserDb>, policy: AuthzPolicy) -> Self {
        SaslServer {
            mechanism: mech,
            users,
            policy,
            state: State::Initial,
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Begins the exchange. `initial`: `Some(bytes)` for an initial response (`Some(&[])` for
    /// an empty one), `None` when the client gave none.
    pub fn start(&mut self, initial: Option<&[u8]>) -> SaslStep {
        if self.state != State::Initial {
            return self.finish(SaslFailure::OutOfSequence);
        }
        match (self.mechanism, initial) {
            (Mechanism::Plain, Some(response)) => self.plain(response),
            (Mechanism::Plain, None) => {
                self.state = State::PlainAwaitingResponse;
                SaslStep::Challenge(Vec::new())
            }
            // An empty initial response carries no user name: ask for one, as if none was given.
            (Mechanism::Login, Some(user)) if !user.is_empty() => self.login_user(user),
            (Mechanism::Login, _) => {
                self.state = State::LoginAwaitingUser;
                SaslStep::Challenge(LOGIN_USERNAME_CHALLENGE.to_vec())
            }
        }
    }

    /// Feeds the client's (base64-decoded) response to the last challenge.
    pub fn step(&mut self, response: &[u8]) -> SaslStep {
        match std::mem::replace(&mut self.state, State::Done) {
            State::PlainAwaitingResponse => self.plain(response),
            State::LoginAwaitingUser => self.login_user(response),
            State::LoginAwaitingPassword(user) => self.login_password(user, response),
            State::Initial | State::Done => self.finish(SaslFailure::OutOfSequence),
        }
    }

    /// Ends the exchange because the client sent `*`.
    pub fn cancel(&mut self) -> SaslStep {
        self.finish(SaslFailure::Cancelled)
    }

    /// Whether the exchange has ended (success or failure).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn finish(&mut self, failure: SaslFailure) -> SaslStep {
        self.state = State::Done;
        SaslStep::Failure(failure)
    }

    /// RFC 4616 §2: `message = [authzid] UTF8NUL authcid UTF8NUL passwd`.
    fn plain(&mut self, message: &[u8]) -> SaslStep {
        self.state = State::Done;
        let mut parts = message.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(passwd), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            let why = if message.iter().filter(|&&b| b == 0).count() > 2 {
                "too many NUL separators"
            } else {
                "expected authzid NUL authcid NUL password"
            };
            return SaslStep::Failure(SaslFailure::MalformedResponse(why));
        };
        if authcid.is_empty() {
            return SaslStep::Failure(SaslFailure::MalformedResponse("empty authcid"));
        }
        if passwd.is_empty() {
            return SaslStep::Failure(SaslFailure::MalformedResponse("empty password"));
        }
        if authzid.len() > MAX_FIELD_LEN
            || authcid.len() > MAX_FIELD_LEN
            || passwd.len() > MAX_FIELD_LEN
        {
            return SaslStep::Failure(SaslFailure::MalformedResponse(
                "field longer than 255 octets",
            ));
        }
        let (Ok(authzid), Ok(authcid)) =
            (std::str::from_utf8(authzid), std::str::from_utf8(authcid))
        else {
            return SaslStep::Failure(SaslFailure::MalformedResponse("identity is not UTF-8"));
        };
        self.authenticate(authcid, authzid, passwd)
    }

    /// LOGIN, first answer: the user name.
    fn login_user(&mut self, user: &[u8]) -> SaslStep {
        if user.is_empty() {
            return self.finish(SaslFailure::MalformedResponse("empty user name"));
        }
        if user.len() > MAX_FIELD_LEN {
            return self.finish(SaslFailure::MalformedResponse(
                "user name longer than 255 octets",
            ));
        }
        if user.contains(&0) {
            return self.finish(SaslFailure::MalformedResponse("NUL in user name"));
        }
        let Ok(user) = String::from_utf8(user.to_vec()) else {
            return self.finish(SaslFailure::MalformedResponse("user name is not UTF-8"));
        };
        self.state = State::LoginAwaitingPassword(user);
        SaslStep::Challenge(LOGIN_PASSWORD_CHALLENGE.to_vec())
    }

    /// LOGIN, second answer: the password.
    fn login_password(&mut self, user: String, password: &[u8]) -> SaslStep {
        self.state = State::Done;
        if password.len() > MAX_FIELD_LEN {
            return SaslStep::Failure(SaslFailure::MalformedResponse(
                "password longer than 255 octets",
            ));
        }
        self.authenticate(&user, "", password)
    }

    /// Checks the password, then the authorization; `authzid` empty means "as `authcid`".
    fn authenticate(&mut self, authcid: &str, authzid: &str, password: &[u8]) -> SaslStep {
        self.state = State::Done;
        if !self.users.verify(authcid, password) {
            return SaslStep::Failure(SaslFailure::BadCredentials);
        }
        let authzid = if authzid.is_empty() { authcid } else { authzid };
        if !self.policy.allows(authcid, authzid) {
            return SaslStep::Failure(SaslFailure::AuthzDenied);
        }
        SaslStep::Success(Identity {
            authcid: authcid.to_owned(),
            authzid: authzid.to_owned(),
        })
    }
}

/// Decodes one client response line (without its CRLF) from base64: the standard alphabet with
/// canonical padding. White space, a missing `=` or any other character is
/// [`SaslFailure::MalformedResponse`]. An empty line is an empty response.
pub fn decode_base64_line(line: &[u8]) -> Result<Vec<u8>, SaslFailure> {
    STANDARD
        .decode(line)
        .map_err(|_| SaslFailure::MalformedResponse("invalid base64"))
}

/// Decodes an initial response given as a command argument: `=` is an empty initial response
/// (RFC 4959 §3 for IMAP, the SASL-IR convention), anything else is base64.
pub fn decode_initial_response(arg: &[u8]) -> Result<Vec<u8>, SaslFailure> {
    if arg == b"=" {
        Ok(Vec::new())
    } else {
        decode_base64_line(arg)
    }
}

/// Encodes a challenge in base64 (standard alphabet, with padding); empty bytes give `""`.
pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Whether a client line (without its CRLF) cancels the exchange: exactly `*` (RFC 4422 §3.5,
/// RFC 3501 §6.2.2).
pub fn is_cancel(line: &[u8]) -> bool {
    line == b"*"
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn users() -> Arc<UserDb> {
        Arc::new(
            UserDb::parse("alice:{PLAIN}wonderland\nadmin:{PLAIN}root-pw\nbob:{PLAIN}builder\n")
                .unwrap(),
        )
    }

    fn policy() -> AuthzPolicy {
        AuthzPolicy {
            admins: vec!["admin".to_owned()],
        }
    }

    fn server(mech: Mechanism) -> SaslServer {
        SaslServer::new(mech, users(), policy())
    }

    fn id(authcid: &str, authzid: &str) -> SaslStep {
        SaslStep::Success(Identity {
            authcid: authcid.into(),
            authzid: authzid.into(),
        })
    }

    fn malformed(s: &mut SaslServer, initial: &[u8]) -> &'static str {
        match s.start(Some(initial)) {
            SaslStep::Failure(SaslFailure::MalformedResponse(why)) => why,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn authz_policy() {
        let p = policy();
        assert!(p.is_admin("admin"));
        assert!(!p.is_admin("alice"));
        assert!(p.allows("alice", "alice"));
        assert!(!p.allows("alice", "bob"));
        assert!(p.allows("admin", "bob"));
        assert!(p.allows("admin", "nobody-in-the-db"));
        assert!(!AuthzPolicy::default().allows("admin", "bob"));
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(Mechanism::from_name(b"plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name(b"PLAIN"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::from_name(b"LoGiN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::from_name(b"GSSAPI"), None);
        assert_eq!(Mechanism::from_name(b"PLAIN "), None);
        assert_eq!(Mechanism::from_name(b""), None);
        assert_eq!(Mechanism::Plain.name(), "PLAIN");
        assert_eq!(Mechanism::Login.to_string(), "LOGIN");
    }

    #[test]
    fn plain_initial_response() {
        let mut s = server(Mechanism::Plain);
        assert_eq!(s.start(Some(b"\0alice\0wonderland")), id("alice", "alice"));
        assert!(s.is_done());
        // A finished exchange refuses further steps.
        assert_eq!(s.step(b"x"), SaslStep::Failure(SaslFailure::OutOfSequence));
    }

    #[test]
    fn plain_explicit_authzid_equal_to_authcid() {
        let mut s = server(Mechanism::Plain);
        assert_eq!(
            s.start(Some(b"alice\0alice\0wonderland")),
            id("alice", "alice")
        );
    }

    #[test]
    fn plain_without_initial_response_sends_empty_challenge() {
        let mut s = server(Mechanism::Plain);
        assert_eq!(s.start(None), SaslStep::Challenge(Vec::new()));
        assert_eq!(s.step(b"\0bob\0builder"), id("bob", "bob"));
    }

    #[test]
    fn plain_wrong_password_and_unknown_user_look_alike() {
        let mut s = server(Mechanism::Plain);
        assert_eq!(
            s.start(Some(b"\0alice\0wrong")),
            SaslStep::Failure(SaslFailure::BadCredentials)
        );
        let mut s = server(Mechanism::Plain);
        assert_eq!(
            s.start(Some(b"\0mallory\0wonderland")),
            SaslStep::Failure(SaslFailure::BadCredentials)
        );
    }

    #[test]
    fn plain_proxy_authorization_only_for_admins() {
        let mut s = server(Mechanism::Plain);
        assert_eq!(
            s.start(Some(b"alice\0admin\0root-pw")),
            id("admin", "alice")
        );
        let mut s = server(Mechanism::Plain);
        assert_eq!(
            s.start(Some(b"bob\0alice\0wonderland")),
            SaslStep::Failure(SaslFailure::AuthzDenied)
        );
        // Wrong password with an authzid is still a credentials failure, not an authz one.
        let mut s = server(Mechanism::Plain);
        assert_eq!(
            s.start(Some(b"bob\0alice\0nope")),
            SaslStep::Failure(SaslFailure::BadCredentials)
        );
    }

    #[test]
    fn plain_malformed() {
        let long = "a".repeat(256);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"alice\0wonderland".to_vec(),
                "expected authzid NUL authcid NUL password",
            ),
            (b"".to_vec(), "expected authzid NUL authcid NUL password"),
            (b"\0alice\0wonder\0land".to_vec(), "too many NUL separators"),
            (b"\0\0wonderland".to_vec(), "empty authcid"),
            (b"\0alice\0".to_vec(), "empty password"),
            (b"\0al\xffice\0pw".to_vec(), "identity is not UTF-8"),
            (
                format!("\0{long}\0pw").into_bytes(),
                "field longer than 255 octets",
            ),
            (
                format!("\0alice\0{long}").into_bytes(),
                "field longer than 255 octets",
            ),
            (
                format!("{long}\0alice\0wonderland").into_bytes(),
                "field longer than 255 octets",
            ),
        ];
        for (message, why) in cases {
            assert_eq!(
                malformed(&mut server(Mechanism::Plain), &message),
                why,
                "{:?}",
                String::from_utf8_lossy(&message)
            );
        }
    }

    #[test]
    fn plain_accepts_255_octet_fields() {
        let name = "n".repeat(255);
        let pw = "p".repeat(255);
        let db = Arc::new(UserDb::parse(&format!("{name}:{{PLAIN}}{pw}\n")).unwrap());
        let mut s = SaslServer::new(Mechanism::Plain, db, AuthzPolicy::default());
        assert_eq!(
            s.start(Some(format!("\0{name}\0{pw}").as_bytes())),
            id(&name, &name)
        );
    }

    #[test]
    fn login_two_challenges() {
        let mut s = server(Mechanism::Login);
        assert_eq!(s.start(None), SaslStep::Challenge(b"Username:".to_vec()));
        assert_eq!(s.step(b"alice"), SaslStep::Challenge(b"Password:".to_vec()));
        assert_eq!(s.step(b"wonderland"), id("alice", "alice"));
    }

    #[test]
    fn login_initial_response_is_the_user_name() {
        let mut s = server(Mechanism::Login);
        assert_eq!(
            s.start(Some(b"bob")),
            SaslStep::Challenge(b"Password:".to_vec())
        );
        assert_eq!(s.step(b"builder"), id("bob", "bob"));
        let mut s = server(Mechanism::Login);
        assert_eq!(
            s.start(Some(b"")),
            SaslStep::Challenge(b"Username:".to_vec())
        );
    }

    #[test]
    fn login_failures() {
        let mut s = server(Mechanism::Login);
        s.start(None);
        s.step(b"alice");
        assert_eq!(
            s.step(b"nope"),
            SaslStep::Failure(SaslFailure::BadCredentials)
        );
        let mut s = server(Mechanism::Login);
        s.start(None);
        assert_eq!(
            s.step(b""),
            SaslStep::Failure(SaslFailure::MalformedResponse("empty user name"))
        );
        let mut s = server(Mechanism::Login);
        s.start(None);
        assert_eq!(
            s.step(b"a\0b"),
            SaslStep::Failure(SaslFailure::MalformedResponse("NUL in user name"))
        );
        let mut s = server(Mechanism::Login);
        s.start(None);
        s.step(b"alice");
        assert_eq!(
            s.step("x".repeat(256).as_bytes()),
            SaslStep::Failure(SaslFailure::MalformedResponse(
                "password longer than 255 octets"
            ))
        );
    }

    #[test]
    fn out_of_sequence_and_cancel() {
        let mut s = server(Mechanism::Login);
        assert_eq!(
            s.step(b"alice"),
            SaslStep::Failure(SaslFailure::OutOfSequence)
        );
        let mut s = server(Mechanism::Plain);
        assert_eq!(s.start(None), SaslStep::Challenge(vec![]));
        assert_eq!(s.start(None), SaslStep::Failure(SaslFailure::OutOfSequence));
        let mut s = server(Mechanism::Login);
        s.start(None);
        assert_eq!(s.cancel(), SaslStep::Failure(SaslFailure::Cancelled));
        assert!(s.is_done());
    }

    #[test]
    fn failure_text_and_debug_never_show_the_password() {
        let mut s = server(Mechanism::Login);
        s.start(Some(b"alice"));
        let step = s.step(b"hunter2");
        let shown = format!("{step:?} {s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("wonderland"), "{shown}");
        for f in [
            SaslFailure::BadCredentials,
            SaslFailure::MalformedResponse("invalid base64"),
            SaslFailure::AuthzDenied,
            SaslFailure::Cancelled,
            SaslFailure::OutOfSequence,
        ] {
            let text = f.to_string();
            assert!(
                !text.is_empty() && !text.contains('\n') && text.len() < 80,
                "{text}"
            );
        }
    }

    #[test]
    fn base64_helpers() {
        assert_eq!(encode_base64(b""), "");
        assert_eq!(
            encode_base64(b"\0alice\0wonderland"),
            "AGFsaWNlAHdvbmRlcmxhbmQ="
        );
        assert_eq!(
            decode_base64_line(b"AGFsaWNlAHdvbmRlcmxhbmQ=").unwrap(),
            b"\0alice\0wonderland"
        );
        assert_eq!(decode_base64_line(b"").unwrap(), b"");
        for bad in [
            &b"AGFsaWNlAHdvbmRlcmxhbmQ"[..],
            b"AGFsaWNl AHdvbmRlcmxhbmQ=",
            b"AGFsaWNlAHdvbmRlcmxhbmQ=\r\n",
            b" AGFs",
            b"*",
            b"=",
            b"AG-_",
            b"QQ==QQ==",
        ] {
            assert_eq!(
                decode_base64_line(bad),
                Err(SaslFailure::MalformedResponse("invalid base64")),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(decode_initial_response(b"=").unwrap(), b"");
        assert_eq!(decode_initial_response(b"YWxpY2U=").unwrap(), b"alice");
        assert!(is_cancel(b"*"));
        assert!(!is_cancel(b"* "));
        assert!(!is_cancel(b"**"));
        assert!(!is_cancel(b""));
    }

    quickcheck::quickcheck! {
        fn base64_round_trip(bytes: Vec<u8>) -> bool {
            decode_base64_line(encode_base64(&bytes).as_bytes()) == Ok(bytes)
        }
    }

    proptest! {
        #[test]
        fn sasl_server_never_panics(
            plain in any::<bool>(),
            initial in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            steps in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4),
        ) {
            let mech = if plain { Mechanism::Plain } else { Mechanism::Login };
            let mut s = server(mech);
            let mut ended = false;
            for step in std::iter::once(s.start(initial.as_deref())).chain(steps.iter().map(|r| s.step(r)).collect::<Vec<_>>()) {
                if ended {
                    prop_assert_eq!(step, SaslStep::Failure(SaslFailure::OutOfSequence));
                } else if !matches!(step, SaslStep::Challenge(_)) {
                    ended = true;
                }
            }
        }

        #[test]
        fn plain_structured_never_panics_and_only_right_password_wins(
            authzid in "[a-z\\x00]{0,6}", authcid in "[a-z\\x00]{0,6}", pw in "[a-z\\x00-]{0,12}",
        ) {
            let mut s = server(Mechanism::Plain);
            let step = s.start(Some(format!("{authzid}\0{authcid}\0{pw}").as_bytes()));
            if let SaslStep::Success(identity) = step {
                let expected = match identity.authcid.as_str() {
                    "alice" => "wonderland",
                    "bob" => "builder",
                    "admin" => "root-pw",
                    other => panic!("unknown user {other} authenticated"),
                };
                prop_assert_eq!(pw.as_str(), expected);
            }
        }

        #[test]
        fn decode_never_panics(line in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_base64_line(&line);
            let _ = decode_initial_response(&line);
        }
    }
}
