//! One server-side SASL exchange, whichever mechanism: [`Exchange`] wraps a PLAIN/LOGIN
//! [`SaslServer`] or (cargo feature `gssapi`) a `GssapiServer` behind the same
//! `start`/`step`/`cancel` → [`SaslStep`] life cycle, so that each protocol (MUPDATE's bare
//! base64 lines, IMAP's `+ base64` continuations) has one AUTHENTICATE loop for all of them.

use std::sync::Arc;

use super::passwd::UserDb;
use super::sasl::{AuthzPolicy, Mechanism, SaslServer, SaslStep};

/// The server's GSSAPI acceptor credentials (`crate::auth::gssapi::GssapiAcceptor`).
#[cfg(feature = "gssapi")]
pub type Acceptor = super::gssapi::GssapiAcceptor;

/// Without the cargo feature `gssapi` there are no acceptor credentials: this type has no value,
/// so an `Option<Acceptor>` is always `None` and GSSAPI is never offered.
#[cfg(not(feature = "gssapi"))]
#[derive(Debug, Clone)]
pub enum Acceptor {}

/// The server side of one exchange, whichever mechanism.
#[derive(Debug)]
pub enum Exchange {
    /// PLAIN or LOGIN.
    Sasl(SaslServer),
    /// GSSAPI (boxed: the GSSAPI context is larger than the other variant).
    #[cfg(feature = "gssapi")]
    Gssapi(Box<super::gssapi::GssapiServer>),
}

impl Exchange {
    /// The exchange for the mechanism the client named (case-insensitive), if the server offers
    /// it: PLAIN and LOGIN always, GSSAPI when it has acceptor credentials (`gssapi`).
    pub fn for_mechanism(
        name: &str,
        users: &Arc<UserDb>,
        policy: AuthzPolicy,
        gssapi: Option<&Acceptor>,
    ) -> Option<Exchange> {
        if let Some(mech) = Mechanism::from_name(name.as_bytes()) {
            return Some(Exchange::Sasl(SaslServer::new(
                mech,
                Arc::clone(users),
                policy,
            )));
        }
        gssapi_exchange(name, policy, gssapi)
    }

    /// Whether this exchange carries a password over the connection (PLAIN, LOGIN), which a
    /// server may refuse before TLS; GSSAPI does not.
    pub fn sends_password(&self) -> bool {
        match self {
            Exchange::Sasl(_) => true,
            #[cfg(feature = "gssapi")]
            Exchange::Gssapi(_) => false,
        }
    }

    /// Begins the exchange with the (decoded) initial response, if the client gave one.
    pub fn start(&mut self, initial: Option<&[u8]>) -> SaslStep {
        match self {
            Exchange::Sasl(s) => s.start(initial),
            #[cfg(feature = "gssapi")]
            Exchange::Gssapi(s) => s.start(initial),
        }
    }

    /// Feeds the client's (decoded) response to the last challenge.
    pub fn step(&mut self, response: &[u8]) -> SaslStep {
        match self {
            Exchange::Sasl(s) => s.step(response),
            #[cfg(feature = "gssapi")]
            Exchange::Gssapi(s) => s.step(response),
        }
    }

    /// Ends the exchange because the client sent `*`.
    pub fn cancel(&mut self) -> SaslStep {
        match self {
            Exchange::Sasl(s) => s.cancel(),
            #[cfg(feature = "gssapi")]
            Exchange::Gssapi(s) => s.cancel(),
        }
    }
}

/// The SASL names a server offers, in advertising order: PLAIN and LOGIN (when `passwords`,
/// i.e. the connection may carry passwords), then GSSAPI when it has acceptor credentials.
pub fn offered_mechanisms(passwords: bool, gssapi: Option<&Acceptor>) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = if passwords {
        Mechanism::ALL.iter().map(Mechanism::name).collect()
    } else {
        Vec::new()
    };
    if gssapi.is_some() {
        names.push(GSSAPI);
    }
    names
}

/// The registered name of SASL GSSAPI (RFC 4752).
pub const GSSAPI: &str = "GSSAPI";

#[cfg(feature = "gssapi")]
fn gssapi_exchange(name: &str, policy: AuthzPolicy, gssapi: Option<&Acceptor>) -> Option<Exchange> {
    let acceptor = gssapi?;
    name.eq_ignore_ascii_case(GSSAPI)
        .then(|| Exchange::Gssapi(Box::new(super::gssapi::GssapiServer::new(acceptor, policy))))
}

#[cfg(not(feature = "gssapi"))]
fn gssapi_exchange(
    _name: &str,
    _policy: AuthzPolicy,
    gssapi: Option<&Acceptor>,
) -> Option<Exchange> {
    // `Acceptor` has no value without the feature.
    gssapi.map(|a| match *a {})
}

/// Runs a step off the async threads (an Argon2 verification takes tens of milliseconds; a
/// GSSAPI step may read the keytab). `None` if the step panicked.
pub async fn run_blocking(
    mut exchange: Exchange,
    f: impl FnOnce(&mut Exchange) -> SaslStep + Send + 'static,
) -> Option<(Exchange, SaslStep)> {
    tokio::task::spawn_blocking(move || {
        let step = f(&mut exchange);
        (exchange, step)
    })
    .await
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;

    fn users() -> Arc<UserDb> {
        Arc::new(UserDb::parse("alice:{PLAIN}wonderland\n").unwrap())
    }

    #[test]
    fn picks_the_named_mechanism() {
        let users = users();
        assert!(Exchange::for_mechanism("gssapi", &users, AuthzPolicy::default(), None).is_none());
        assert!(Exchange::for_mechanism("NOPE", &users, AuthzPolicy::default(), None).is_none());
        let mut plain =
            Exchange::for_mechanism("plain", &users, AuthzPolicy::default(), None).unwrap();
        assert!(plain.sends_password());
        assert_eq!(
            plain.start(Some(b"\0alice\0wonderland")),
            SaslStep::Success(Identity {
                authcid: "alice".into(),
                authzid: "alice".into()
            })
        );
        let mut login =
            Exchange::for_mechanism("LOGIN", &users, AuthzPolicy::default(), None).unwrap();
        assert!(matches!(login.start(None), SaslStep::Challenge(_)));
        assert!(matches!(login.cancel(), SaslStep::Failure(_)));
    }

    #[test]
    fn offers_gssapi_only_with_credentials() {
        assert_eq!(offered_mechanisms(true, None), ["PLAIN", "LOGIN"]);
        assert!(offered_mechanisms(false, None).is_empty());
    }

    #[tokio::test]
    async fn steps_run_off_the_async_threads() {
        let users = users();
        let ex = Exchange::for_mechanism("PLAIN", &users, AuthzPolicy::default(), None).unwrap();
        let (mut ex, step) = run_blocking(ex, |e| e.start(None)).await.unwrap();
        assert_eq!(step, SaslStep::Challenge(Vec::new()));
        let (_, step) = run_blocking(ex, |e| e.step(b"\0alice\0wrong"))
            .await
            .unwrap();
        assert!(matches!(step, SaslStep::Failure(_)));
        ex = Exchange::for_mechanism("PLAIN", &users, AuthzPolicy::default(), None).unwrap();
        assert!(run_blocking(ex, |_| panic!("boom")).await.is_none());
    }
}
