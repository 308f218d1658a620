//! AUTHENTICATE on a connection (RFC 3656 4.2): the SASL exchange with bare base64 lines,
//! `*` to cancel, and a pause before every failure except a cancel. PLAIN and LOGIN run a
//! `SaslServer`; GSSAPI (cargo feature `gssapi`, offered when the server has acceptor
//! credentials) a `GssapiServer`, through the same [`Exchange`] loop (shared with imapd).

use std::time::Duration;

use tracing::{info, trace};

use crate::auth::exchange::{Acceptor, Exchange, run_blocking};
use crate::auth::sasl::{
    AuthzPolicy, SaslFailure, SaslStep, decode_base64_line, encode_base64, is_cancel,
};

use super::super::codec::Event;
use super::super::faults::Fault;
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
        let mut policy = AuthzPolicy {
            admins: self.shared.policy.admins.clone(),
        };
        if self.shared.policy.faults.has(Fault::PlainAuthzidUnchecked) {
            policy = AuthzPolicy::anyone_as_anyone(&self.shared.users);
        }
        let server = Exchange::for_mechanism(
            mechanism,
            &self.shared.users,
            policy,
            self.gssapi_acceptor(),
        );
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

    /// The server's GSSAPI acceptor credentials, when it offers GSSAPI.
    #[cfg(feature = "gssapi")]
    pub(super) fn gssapi_acceptor(&self) -> Option<&Acceptor> {
        self.shared.gssapi.as_ref()
    }

    /// Without the `gssapi` feature there are none.
    #[cfg(not(feature = "gssapi"))]
    pub(super) fn gssapi_acceptor(&self) -> Option<&Acceptor> {
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
