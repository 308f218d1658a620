//! The auth API as the protocol layers use it: a passwd-file on disk with PLAIN and ARGON2ID
//! users, base64 lines in and out, and a `SaslServer` per exchange.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use murder_server::auth::passwd::{Argon2Params, hash_password_argon2id_with};
use murder_server::auth::sasl::{
    decode_base64_line, decode_initial_response, encode_base64, is_cancel,
};
use murder_server::auth::{
    AuthzPolicy, Identity, Mechanism, SaslFailure, SaslServer, SaslStep, UserDb,
};

fn users() -> Arc<UserDb> {
    let phc = hash_password_argon2id_with(b"argon-pw", Argon2Params::new(8, 1, 1, None).unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    std::fs::write(
        &path,
        format!(
            "# murder users\ncyrus:{{PLAIN}}cyrus-pw::::\nmupdate:{{ARGON2ID}}{phc}:1000:1000\n"
        ),
    )
    .unwrap();
    Arc::new(UserDb::load(&path).unwrap())
}

/// Drives one exchange the way a MUPDATE session does: bare base64 lines each way.
fn run(mech: &[u8], initial: Option<&str>, client_lines: &[&str]) -> (Vec<String>, SaslStep) {
    let policy = AuthzPolicy {
        admins: vec!["cyrus".into()],
    };
    let mut server = SaslServer::new(Mechanism::from_name(mech).unwrap(), users(), policy);
    let initial = initial.map(|arg| decode_initial_response(arg.as_bytes()).unwrap());
    let mut challenges = Vec::new();
    let mut step = server.start(initial.as_deref());
    let mut lines = client_lines.iter();
    while let SaslStep::Challenge(bytes) = &step {
        challenges.push(encode_base64(bytes));
        let Some(line) = lines.next() else { break };
        step = if is_cancel(line.as_bytes()) {
            server.cancel()
        } else {
            match decode_base64_line(line.as_bytes()) {
                Ok(response) => server.step(&response),
                Err(failure) => SaslStep::Failure(failure),
            }
        };
    }
    (challenges, step)
}

fn ok(authcid: &str, authzid: &str) -> SaslStep {
    SaslStep::Success(Identity {
        authcid: authcid.into(),
        authzid: authzid.into(),
    })
}

#[test]
fn plain_with_initial_response_against_argon2id_user() {
    let ir = encode_base64(b"\0mupdate\0argon-pw");
    assert_eq!(
        run(b"PLAIN", Some(&ir), &[]),
        (vec![], ok("mupdate", "mupdate"))
    );
    let ir = encode_base64(b"\0mupdate\0wrong");
    assert_eq!(
        run(b"PLAIN", Some(&ir), &[]),
        (vec![], SaslStep::Failure(SaslFailure::BadCredentials))
    );
}

#[test]
fn plain_with_empty_challenge_and_proxy_authorization() {
    let resp = encode_base64(b"mupdate\0cyrus\0cyrus-pw");
    assert_eq!(
        run(b"plain", None, &[&resp]),
        (vec![String::new()], ok("cyrus", "mupdate"))
    );
}

#[test]
fn login_over_base64_lines() {
    let (challenges, step) = run(
        b"LOGIN",
        None,
        &[&encode_base64(b"cyrus"), &encode_base64(b"cyrus-pw")],
    );
    assert_eq!(challenges, vec!["VXNlcm5hbWU6", "UGFzc3dvcmQ6"]);
    assert_eq!(step, ok("cyrus", "cyrus"));
}

#[test]
fn empty_initial_response_cancel_and_bad_base64() {
    // `=` is an empty initial response: PLAIN fails on it as malformed.
    assert_eq!(
        run(b"PLAIN", Some("="), &[]).1,
        SaslStep::Failure(SaslFailure::MalformedResponse(
            "expected authzid NUL authcid NUL password"
        ))
    );
    assert_eq!(
        run(b"LOGIN", None, &["*"]).1,
        SaslStep::Failure(SaslFailure::Cancelled)
    );
    assert_eq!(
        run(b"LOGIN", None, &["not base64!"]).1,
        SaslStep::Failure(SaslFailure::MalformedResponse("invalid base64"))
    );
}
