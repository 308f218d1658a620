//! AUTHENTICATE on a connection (RFC 3656 4.2): the SASL exchange with bare base64 lines,
//! `*` to cancel, and a pause before every failure except a cancel. PLAIN and LOGIN run a
//! [`SaslServer`]; GSSAPI (cargo feature `gssapi`, offered when the server has acceptor
//! credentials) a `GssapiServer`, through the same [`Exchange`] loop.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, trace};

use crate::auth::sasl::{
    AuthzPolicy, Mechanism, SaslFailure, SaslServer, SaslStep, decode_base64_line, encode_base64,
    is_cancel,
};

use super::super::codec::Event;
use super::super::session::bye;
use super::{ConnError, Connection, Flow};

impl Connection {
    /// Read until the decoder yields the next SASL line (or an error).
    async fn sasl_line(&mut self) -> Result<Option<Event>, ConnError> {
        self.decoder.expect_sasl_line();
        loop {
            match self.decoder.decode(&mut self.input) {
                Ok(Some(ev)) => return Ok(Some(ev)),
                Ok(None) => {}
                Err(fatal) => {
                    self.output.extend(bye(&fatal.to_string()));
                    return Ok(None);
                }
            }
            if !self.read_more().await? {
                self.output.extend(bye("idle for too long"));
                return Ok(None);
            }
        }
    }

    pub(super) async fn authenticate(
        &mut self,
        tag: &[u8],
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) -> Result<Flow, ConnError> {
        let policy = AuthzPolicy {
            admins: self.shared.policy.admins.clone(),
        };
        let server = match Mechanism::from_name(mechanism.as_bytes()) {
            Some(mech) => Some(Exchange::Sasl(SaslServer::new(
                mech,
                Arc::clone(&self.shared.users),
                policy,
            ))),
            None => self.gssapi_exchange(mechanism, policy),
        };
        let Some(mut server) = server else {
            let no = self.session.auth_failed(
                tag,
                &format!("{mechanism} is not a supported SASL mechanism"),
            );
            self.output.extend(no);
            return Ok(Flow::Continue);
        };
        let initial = match initial.map(|i| {
            if i.is_empty() {
                Ok(i)
            } else {
                decode_base64_line(&i)
            }
        }) {
            None => None,
            Some(Ok(i)) => Some(i),
            Some(Err(f)) => return self.auth_failure(tag, f).await,
        };
        let Some((s, mut step)) = run_blocking(server, move |s| s.start(initial.as_deref())).await
        else {
            return self.auth_failure(tag, SaslFailure::OutOfSequence).await;
        };
        server = s;
        loop {
            match step {
                SaslStep::Success(identity) => {
                    info!(
                        peer = %self.peer,
                        authcid = %identity.authcid,
                        authzid = %identity.authzid,
                        "authenticated"
                    );
                    let ok = self.session.authenticated(tag, &identity.authzid);
                    self.output.extend(ok);
                    return Ok(Flow::Continue);
                }
                SaslStep::Failure(f) => return self.auth_failure(tag, f).await,
                SaslStep::Challenge(challenge) => {
                    self.output.extend(encode_base64(&challenge).into_bytes());
                    self.output.extend_from_slice(b"\r\n");
                    self.flush().await?;
                    let line = match self.sasl_line().await? {
                        None => return Ok(Flow::Close),
                        Some(Event::SaslLine(line)) => {
                            trace!(peer = %self.peer, "received SASL response (redacted)");
                            line
                        }
                        Some(_) => {
                            return self
                                .auth_failure(tag, SaslFailure::MalformedResponse("bad line"))
                                .await;
                        }
                    };
                    if is_cancel(&line) {
                        step = server.cancel();
                        continue;
                    }
                    match decode_base64_line(&line) {
                        Ok(response) => {
                            let Some((s, next)) =
                                run_blocking(server, move |s| s.step(&response)).await
                            else {
                                return self.auth_failure(tag, SaslFailure::OutOfSequence).await;
                            };
                            server = s;
                            step = next;
                        }
                        Err(f) => return self.auth_failure(tag, f).await,
                    }
                }
            }
        }
    }

    /// A GSSAPI exchange when `mechanism` is GSSAPI and the server offers it.
    #[cfg(feature = "gssapi")]
    fn gssapi_exchange(&self, mechanism: &str, policy: AuthzPolicy) -> Option<Exchange> {
        use crate::auth::gssapi::{GssapiServer, MECHANISM_NAME};
        let acceptor = self.shared.gssapi.as_ref()?;
        mechanism
            .eq_ignore_ascii_case(MECHANISM_NAME)
            .then(|| Exchange::Gssapi(Box::new(GssapiServer::new(acceptor, policy))))
    }

    /// Without the `gssapi` feature only PLAIN and LOGIN exist.
    #[cfg(not(feature = "gssapi"))]
    fn gssapi_exchange(&self, _mechanism: &str, _policy: AuthzPolicy) -> Option<Exchange> {
        None
    }

    async fn auth_failure(&mut self, tag: &[u8], failure: SaslFailure) -> Result<Flow, ConnError> {
        info!(peer = %self.peer, reason = %failure, "authentication failed");
        if failure != SaslFailure::Cancelled {
            let delay: Duration = self.shared.limits.auth_failure_delay;
            if !delay.is_zero() {
                self.flush().await?;
                tokio::time::sleep(delay).await;
            }
        }
        let no = self.session.auth_failed(tag, &failure.to_string());
        self.output.extend(no);
        if failure != SaslFailure::Cancelled {
            self.auth_failures = self.auth_failures.saturating_add(1);
            if self.auth_failures >= self.shared.limits.max_auth_failures {
                info!(peer = %self.peer, failures = self.auth_failures, "too many authentication failures");
                self.output.extend(bye("too many authentication failures"));
                return Ok(Flow::Close);
            }
        }
        Ok(Flow::Continue)
    }
}

/// The server side of one exchange, whichever mechanism.
enum Exchange {
    /// PLAIN or LOGIN.
    Sasl(SaslServer),
    /// GSSAPI (boxed: the GSSAPI context is larger than the other variant).
    #[cfg(feature = "gssapi")]
    Gssapi(Box<crate::auth::gssapi::GssapiServer>),
}

impl Exchange {
    fn start(&mut self, initial: Option<&[u8]>) -> SaslStep {
        match self {
            Exchange::Sasl(s) => s.start(initial),
            #[cfg(feature = "gssapi")]
            Exchange::Gssapi(s) => s.start(initial),
        }
    }

    fn step(&mut self, response: &[u8]) -> SaslStep {
        match self {
            Exchange::Sasl(s) => s.step(response),
            #[cfg(feature = "gssapi")]
            Exchange::Gssapi(s) => s.step(response),
        }
    }

    fn cancel(&mut self) -> SaslStep {
        match self {
            Exchange::Sasl(s) => s.cancel(),
            #[cfg(feature = "gssapi")]
            Exchange::Gssapi(s) => s.cancel(),
        }
    }
}

/// Run a SASL step off the async threads (an Argon2 verification takes tens of milliseconds).
/// None if the step panicked.
async fn run_blocking(
    mut server: Exchange,
    f: impl FnOnce(&mut Exchange) -> SaslStep + Send + 'static,
) -> Option<(Exchange, SaslStep)> {
    tokio::task::spawn_blocking(move || {
        let step = f(&mut server);
        (server, step)
    })
    .await
    .ok()
}
