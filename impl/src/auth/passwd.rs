//! The user database: a Dovecot-style passwd-file.
//!
//! One user per line, `name:{SCHEME}secret`, with any further `:`-separated fields ignored (as
//! Dovecot ignores uid, gid, home, ... for a pure password database). Blank lines and lines whose
//! first non-blank character is `#` are skipped; a trailing `\r` (a file edited on Windows) is
//! dropped. Schemes, case-insensitive as in Dovecot:
//!
//! * `{PLAIN}secret`: the password in clear, compared in constant time.
//! * `{ARGON2ID}$argon2id$v=19$m=...,t=...,p=...$salt$hash`: a PHC string, verified with the
//!   `argon2` crate using the parameters stored in the string.
//!
//! A secret never appears in `Debug` output, in an error message or in a log line.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

/// Argon2 cost parameters (memory KiB, iterations, lanes), for [`hash_password_argon2id_with`].
pub use argon2::Params as Argon2Params;

/// Length in bytes of the random salt [`hash_password_argon2id`] draws (the PHC recommendation).
pub const ARGON2_SALT_LEN: usize = 16;

/// Why a passwd-file was rejected; [`PasswdError::line`] says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswdReason {
    /// The file could not be read (the I/O error, as text).
    #[error("cannot read file: {0}")]
    Io(String),
    /// The file is not UTF-8.
    #[error("file is not valid UTF-8")]
    NotUtf8,
    /// A line has no `:` after the user name.
    #[error("missing ':' between user name and password")]
    MissingColon,
    /// The user name before the first `:` is empty.
    #[error("empty user name")]
    EmptyName,
    /// The user name holds a control character or white space.
    #[error("user name contains white space or a control character")]
    BadName,
    /// The user appeared on an earlier line (given).
    #[error("duplicate user (first defined on line {first_line})")]
    DuplicateUser {
        /// The line of the first definition.
        first_line: usize,
    },
    /// The secret does not start with `{SCHEME}`.
    #[error("password has no {{SCHEME}} prefix (expected {{PLAIN}} or {{ARGON2ID}})")]
    MissingScheme,
    /// The scheme is neither `PLAIN` nor `ARGON2ID` (the scheme name, never the secret).
    #[error("unknown password scheme {{{0}}} (expected {{PLAIN}} or {{ARGON2ID}})")]
    UnknownScheme(String),
    /// An `{ARGON2ID}` secret is not a valid argon2id PHC string (what is wrong, never the secret).
    #[error("malformed {{ARGON2ID}} PHC string: {0}")]
    MalformedPhc(&'static str),
}

/// A passwd-file that could not be loaded: the file (when loaded from one), the 1-based line
/// (0 for a problem with the whole file) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PasswdError {
    /// The file, when the database was loaded with [`UserDb::load`].
    pub path: Option<PathBuf>,
    /// 1-based line number; 0 when the problem is not on one line (unreadable file).
    pub line: usize,
    /// What is wrong.
    pub reason: PasswdReason,
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(p), 0) => write!(f, "{}: {}", p.display(), self.reason),
            (Some(p), n) => write!(f, "{}:{}: {}", p.display(), n, self.reason),
            (None, 0) => write!(f, "{}", self.reason),
            (None, n) => write!(f, "line {}: {}", n, self.reason),
        }
    }
}

/// A stored credential. Its `Debug` never shows the secret.
#[derive(Clone)]
enum Secret {
    /// `{PLAIN}`: the password bytes.
    Plain(Vec<u8>),
    /// `{ARGON2ID}`: the PHC string, validated at load time.
    Argon2id(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Plain(_) => f.write_str("{PLAIN}<redacted>"),
            Secret::Argon2id(_) => f.write_str("{ARGON2ID}<redacted>"),
        }
    }
}

impl Secret {
    /// Whether `password` matches. Constant time in the content for PLAIN; argon2 compares its
    /// outputs in constant time itself.
    fn matches(&self, password: &[u8]) -> bool {
        match self {
            Secret::Plain(stored) => constant_time_eq(stored, password),
            Secret::Argon2id(phc) => match PasswordHash::new(phc) {
                Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// Compares two byte strings without an early exit on the first difference. The running time
/// depends on the lengths only, not on where the strings differ.
fn constant_time_eq(stored: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(stored.len() != given.len());
    for (i, s) in stored.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(0);
        diff |= s ^ g;
    }
    std::hint::black_box(diff) == 0
}

/// The users a server accepts, loaded from a passwd-file; shared by the SASL mechanisms of both
/// servers (wrap it in an `Arc`). `Debug` lists user names only.
#[derive(Clone)]
pub struct UserDb {
    users: HashMap<String, Secret>,
    /// What an unknown user is verified against (see [`UserDb::verify`]).
    dummy: Secret,
}

impl fmt::Debug for UserDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("UserDb").field("users", &names).finish()
    }
}

impl UserDb {
    /// Reads and parses a passwd-file. Errors carry the path and the line.
    pub fn load(path: &Path) -> Result<UserDb, PasswdError> {
        let with_path = |line, reason| PasswdError {
            path: Some(path.to_path_buf()),
            line,
            reason,
        };
        let bytes =
            std::fs::read(path).map_err(|e| with_path(0, PasswdReason::Io(e.to_string())))?;
        let text = String::from_utf8(bytes).map_err(|_| with_path(0, PasswdReason::NotUtf8))?;
        UserDb::parse(&text).map_err(|e| with_path(e.line, e.reason))
    }

    /// Parses the text of a passwd-file (see the module documentation for the format).
    pub fn parse(text: &str) -> Result<UserDb, PasswdError> {
        let mut users: HashMap<String, Secret> = HashMap::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        let mut dummy_phc: Option<String> = None;
        for (index, raw) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let err = |reason| PasswdError {
                path: None,
                line: line_no,
                reason,
            };
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (name, rest) = line
                .split_once(':')
                .ok_or_else(|| err(PasswdReason::MissingColon))?;
            if name.is_empty() {
                return Err(err(PasswdReason::EmptyName));
            }
            if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(err(PasswdReason::BadName));
            }
            let field = rest.split(':').next().unwrap_or(rest);
            let secret = parse_secret(field).map_err(err)?;
            if let Secret::Argon2id(phc) = &secret
                && dummy_phc.is_none()
            {
                dummy_phc = Some(dummy_like(phc));
            }
            if let Some(&first) = first_line.get(name) {
                return Err(err(PasswdReason::DuplicateUser { first_line: first }));
            }
            first_line.insert(name.to_owned(), line_no);
            users.insert(name.to_owned(), secret);
        }
        let dummy = match dummy_phc {
            Some(phc) => Secret::Argon2id(phc),
            None => Secret::Plain(b"murder-dummy-secret-never-matches".to_vec()),
        };
        Ok(UserDb { users, dummy })
    }

    /// Whether `password` is the password of `user`. An unknown user is checked against a dummy
    /// entry of the same scheme and cost as the first `{ARGON2ID}` user (or a PLAIN dummy when
    /// there is none), so the answer takes comparable time whether or not the user exists.
    ///
    /// With `{ARGON2ID}` entries this costs one Argon2 evaluation (tens of milliseconds in a
    /// release build with the default parameters): call it from `spawn_blocking` if that matters.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(secret) => secret.matches(password),
            None => {
                // Spend the same work as a real check, then refuse whatever the dummy says.
                let _ = std::hint::black_box(self.dummy.matches(password));
                false
            }
        }
    }

    /// Whether `user` has an entry (names are compared exactly, case-sensitively).
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the database has no user at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user names, sorted.
    pub fn user_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// Parses the password field `{SCHEME}secret`.
fn parse_secret(field: &str) -> Result<Secret, PasswdReason> {
    let after_brace = field.strip_prefix('{').ok_or(PasswdReason::MissingScheme)?;
    let (scheme, secret) = after_brace
        .split_once('}')
        .ok_or(PasswdReason::MissingScheme)?;
    if scheme.eq_ignore_ascii_case("PLAIN") {
        Ok(Secret::Plain(secret.as_bytes().to_vec()))
    } else if scheme.eq_ignore_ascii_case("ARGON2ID") {
        validate_phc(secret)?;
        Ok(Secret::Argon2id(secret.to_owned()))
    } else {
        // The scheme name is short and not secret; cap it so a garbage line stays readable.
        Err(PasswdReason::UnknownScheme(
            scheme.chars().take(32).collect(),
        ))
    }
}

/// Checks that `phc` is an argon2id PHC string that [`Secret::matches`] can verify.
fn validate_phc(phc: &str) -> Result<(), PasswdReason> {
    let hash =
        PasswordHash::new(phc).map_err(|_| PasswdReason::MalformedPhc("not a PHC string"))?;
    if hash.algorithm != Algorithm::Argon2id.ident() {
        return Err(PasswdReason::MalformedPhc("algorithm is not argon2id"));
    }
    if let Some(v) = hash.version {
        Version::try_from(v).map_err(|_| PasswdReason::MalformedPhc("unsupported version"))?;
    }
    if hash.salt.is_none() {
        return Err(PasswdReason::MalformedPhc("missing salt"));
    }
    if hash.hash.is_none() {
        return Err(PasswdReason::MalformedPhc("missing hash"));
    }
    Params::try_from(&hash).map_err(|_| PasswdReason::MalformedPhc("bad m/t/p parameters"))?;
    Ok(())
}

/// A PHC string with the algorithm and parameters of `phc` but a random salt and hash, which no
/// password matches (the output would have to equal random bytes).
fn dummy_like(phc: &str) -> String {
    let Ok(hash) = PasswordHash::new(phc) else {
        return String::new();
    };
    let mut rng = rand::rng();
    let mut salt = [0u8; ARGON2_SALT_LEN];
    rng.fill_bytes(&mut salt);
    let out_len = hash.hash.map_or(32, |h| h.len());
    let mut out = vec![0u8; out_len];
    rng.fill_bytes(&mut out);
    let Ok(salt) = SaltString::encode_b64(&salt) else {
        return String::new();
    };
    let Ok(out) = argon2::password_hash::Output::new(&out) else {
        return String::new();
    };
    let dummy = PasswordHash {
        algorithm: hash.algorithm,
        version: hash.version,
        params: hash.params.clone(),
        salt: Some(salt.as_salt()),
        hash: Some(out),
    };
    dummy.to_string()
}

/// Why [`hash_password_argon2id`] failed (in practice never with the default parameters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argon2id hashing failed: {0}")]
pub struct HashError(String);

/// Hashes `password` with Argon2id and the `argon2` crate's default parameters (the OWASP
/// recommendation: m=19456 KiB, t=2, p=1) and a random salt, giving the PHC string to put after
/// `{ARGON2ID}` in a passwd-file.
pub fn hash_password_argon2id(password: &[u8]) -> Result<String, HashError> {
    hash_password_argon2id_with(password, Params::default())
}

/// [`hash_password_argon2id`] with explicit parameters (tests use cheap ones; a debug build of
/// the default parameters takes about a second).
pub fn hash_password_argon2id_with(password: &[u8], params: Params) -> Result<String, HashError> {
    let mut salt = [0u8; ARGON2_SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let hash = argon
        .hash_password(password, &salt)
        .map_err(|e| HashError(e.to_string()))?;
    Ok(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Cheap Argon2 parameters so debug-build tests stay fast.
    fn cheap() -> Params {
        Params::new(8, 1, 1, None).unwrap()
    }

    #[test]
    fn plain_users_verify() {
        let db = UserDb::parse(
            "# comment\n\nalice:{PLAIN}wonderland\r\nbob:{plain}builder:1000:1000::/home/bob::\n",
        )
        .unwrap();
        assert_eq!(db.len(), 2);
        assert!(db.contains("alice"));
        assert!(db.contains("bob"));
        assert!(!db.contains("carol"));
        assert!(db.verify("alice", b"wonderland"));
        assert!(!db.verify("alice", b"wonderlan"));
        assert!(!db.verify("alice", b"wonderland!"));
        assert!(!db.verify("alice", b""));
        assert!(db.verify("bob", b"builder"));
        assert!(!db.verify("carol", b"wonderland"));
        assert_eq!(db.user_names(), vec!["alice", "bob"]);
    }

    #[test]
    fn empty_plain_password_is_allowed_and_exact() {
        let db = UserDb::parse("anon:{PLAIN}\n").unwrap();
        assert!(db.verify("anon", b""));
        assert!(!db.verify("anon", b"x"));
    }

    #[test]
    fn argon2id_users_verify() {
        let phc = hash_password_argon2id_with(b"s3cret", cheap()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        let db = UserDb::parse(&format!("carol:{{ARGON2ID}}{phc}\n")).unwrap();
        assert!(db.verify("carol", b"s3cret"));
        assert!(!db.verify("carol", b"s3cret "));
        assert!(!db.verify("nobody", b"s3cret"));
        // The dummy for unknown users uses the same parameters.
        let Secret::Argon2id(d) = &db.dummy else {
            panic!("dummy should be argon2id: {:?}", db.dummy)
        };
        assert!(d.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{d}");
        validate_phc(d).unwrap();
    }

    #[test]
    fn default_hash_is_a_valid_phc() {
        let phc = hash_password_argon2id(b"pw").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        validate_phc(&phc).unwrap();
        // Two hashes of one password differ (random salt).
        assert_ne!(
            phc,
            hash_password_argon2id_with(b"pw", Params::default()).unwrap()
        );
    }

    fn reason(text: &str) -> (usize, PasswdReason) {
        let e = UserDb::parse(text).unwrap_err();
        (e.line, e.reason)
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            reason("a:{PLAIN}x\nnocolon\n"),
            (2, PasswdReason::MissingColon)
        );
        assert_eq!(reason("\n\n:{PLAIN}x\n"), (3, PasswdReason::EmptyName));
        assert_eq!(reason("a b:{PLAIN}x\n"), (1, PasswdReason::BadName));
        assert_eq!(
            reason("a:{PLAIN}x\n#\nb:{PLAIN}y\na:{PLAIN}z\n"),
            (4, PasswdReason::DuplicateUser { first_line: 1 })
        );
        assert_eq!(reason("a:secret\n"), (1, PasswdReason::MissingScheme));
        assert_eq!(reason("a:{PLAIN\n"), (1, PasswdReason::MissingScheme));
        assert_eq!(
            reason("a:{SHA512-CRYPT}$6$x\n"),
            (1, PasswdReason::UnknownScheme("SHA512-CRYPT".into()))
        );
        assert_eq!(
            reason("a:{ARGON2ID}not-a-phc\n"),
            (1, PasswdReason::MalformedPhc("not a PHC string"))
        );
        assert_eq!(
            reason("a:{ARGON2ID}$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n"),
            (1, PasswdReason::MalformedPhc("algorithm is not argon2id"))
        );
        assert_eq!(
            reason("a:{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ\n"),
            (1, PasswdReason::MalformedPhc("missing hash"))
        );
    }

    #[test]
    fn error_display_never_shows_the_secret() {
        let e = UserDb::parse("a:{ARGON2ID}hunter2\n").unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(shown.contains("line 1"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let phc = hash_password_argon2id_with(b"pw", cheap()).unwrap();
        let db =
            UserDb::parse(&format!("alice:{{PLAIN}}hunter2\nbob:{{ARGON2ID}}{phc}\n")).unwrap();
        let shown = format!("{db:?} {:?}", db.users);
        assert!(shown.contains("alice") && shown.contains("bob"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("argon2id$"), "{shown}");
    }

    #[test]
    fn load_reports_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, "a:{PLAIN}x\nb:{MD5}y\n").unwrap();
        let e = UserDb::load(&path).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.to_string()
                .starts_with(&format!("{}:2: ", path.display())),
            "{e}"
        );
        std::fs::write(&path, "a:{PLAIN}x\n").unwrap();
        assert!(UserDb::load(&path).unwrap().verify("a", b"x"));
        let missing = UserDb::load(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing.reason, PasswdReason::Io(_)), "{missing:?}");
        std::fs::write(&path, b"a:{PLAIN}\xff\n").unwrap();
        assert_eq!(
            UserDb::load(&path).unwrap_err().reason,
            PasswdReason::NotUtf8
        );
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"\0"));
        assert!(!constant_time_eq(b"\0", b""));
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "(?s).{0,400}") {
            let _ = UserDb::parse(&text);
        }

        #[test]
        fn parse_never_panics_on_passwd_like_text(
            lines in proptest::collection::vec("[a-z#: ]{0,6}(:\\{(PLAIN|ARGON2ID|X)\\}[$a-z0-9=,:]{0,40})?", 0..8)
        ) {
            let _ = UserDb::parse(&lines.join("\n"));
        }

        #[test]
        fn plain_verify_is_equality(stored in "[a-zA-Z0-9!]{0,20}", given in proptest::collection::vec(any::<u8>(), 0..24)) {
            let db = UserDb::parse(&format!("u:{{PLAIN}}{stored}\n")).unwrap();
            prop_assert_eq!(db.verify("u", &given), stored.as_bytes() == given.as_slice());
            prop_assert!(db.verify("u", stored.as_bytes()));
        }
    }
}
