//! Authentication: STARTTLS (the upgrade itself is done by [`Session::run`]), LOGIN and
//! AUTHENTICATE (PLAIN, LOGIN and, with acceptor credentials, GSSAPI, through the
//! [`Exchange`] shared with mupdated: `+ base64` challenges, base64 client lines, `*` cancels
//! with BAD, SASL-IR initial responses), and the login policy.

use super::{Flow, Res, Session};
use crate::auth::exchange::{Exchange, offered_mechanisms, run_blocking};
use crate::auth::sasl::{decode_base64_line, decode_initial_response, encode_base64, is_cancel};
use crate::auth::{AuthzPolicy, SaslFailure, SaslStep};
use crate::imap::faults::Fault;

impl Session {
    pub(super) async fn starttls(&mut self, tag: &str) -> Res<Flow> {
        let Some(acceptor) = self.shared.tls.clone() else {
            self.tagged(
                tag,
                "BAD",
                "STARTTLS is not available (no certificate configured)",
            );
            return Ok(Flow::Continue);
        };
        if self.conn.is_tls() || self.user.is_some() {
            self.tagged(
                tag,
                "BAD",
                "STARTTLS only in the not-authenticated state without TLS",
            );
            return Ok(Flow::Continue);
        }
        self.tagged(tag, "OK", "Begin TLS negotiation now");
        Ok(Flow::StartTls(acceptor))
    }

    pub(super) async fn login(&mut self, tag: &str, user: &[u8], password: &[u8]) -> Flow {
        let Ok(user) = std::str::from_utf8(user) else {
            return self.auth_failed(tag, "NO", "[AUTHENTICATIONFAILED] Invalid credentials");
        };
        if self.shared.users.verify(user, password) {
            self.logged_in(user).await;
            self.tagged(
                tag,
                "OK",
                &format!("[CAPABILITY {}] LOGIN completed", self.capabilities()),
            );
            Flow::Continue
        } else {
            self.auth_failed(tag, "NO", "[AUTHENTICATIONFAILED] Invalid credentials")
        }
    }

    /// Answer a failed LOGIN or AUTHENTICATE and count it: the
    /// [`Limits::max_auth_failures`](crate::imap::Limits::max_auth_failures)th failure on one
    /// connection is followed by `* BYE` and the connection closes.
    fn auth_failed(&mut self, tag: &str, status: &str, text: &str) -> Flow {
        self.tagged(tag, status, text);
        self.auth_failures = self.auth_failures.saturating_add(1);
        if self.auth_failures >= self.shared.limits.max_auth_failures {
            tracing::info!(
                failures = self.auth_failures,
                "too many authentication failures"
            );
            self.push_line("* BYE Too many authentication failures");
            return Flow::Close;
        }
        Flow::Continue
    }

    pub(super) async fn logged_in(&mut self, user: &str) {
        self.user = Some(user.to_string());
        if !self.shared.store.exists(user, "INBOX")
            && let Err(e) = self.create_mailbox(user, "INBOX").await
        {
            tracing::warn!("cannot create INBOX of {user}: {e}");
        }
    }

    pub(super) async fn authenticate(
        &mut self,
        tag: &str,
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) -> Res<Flow> {
        if self.user.is_some() {
            self.tagged(tag, "BAD", "Already authenticated");
            return Ok(Flow::Continue);
        }
        let gssapi = self.shared.gssapi.as_ref();
        let mut policy = AuthzPolicy::default();
        if self.shared.faults.has(Fault::PlainAuthzidUnchecked) {
            policy = AuthzPolicy::anyone_as_anyone(&self.shared.users);
        }
        let Some(mut sasl) = Exchange::for_mechanism(mechanism, &self.shared.users, policy, gssapi)
        else {
            let offered = offered_mechanisms(true, gssapi).join(", ");
            self.tagged(
                tag,
                "NO",
                &format!("Unsupported SASL mechanism ({offered})"),
            );
            return Ok(Flow::Continue);
        };
        if self.login_disabled() && sasl.sends_password() {
            self.tagged(
                tag,
                "NO",
                "[PRIVACYREQUIRED] Authentication is disabled before STARTTLS",
            );
            return Ok(Flow::Continue);
        }
        let initial = match initial.as_deref().map(decode_initial_response) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                return Ok(self.auth_failed(tag, "BAD", &format!("Initial response: {e}")));
            }
        };
        let mut step;
        (sasl, step) = match run_blocking(sasl, move |s| s.start(initial.as_deref())).await {
            Some(done) => done,
            None => return Ok(self.auth_failed(tag, "NO", "Authentication failed")),
        };
        loop {
            match step {
                SaslStep::Challenge(c) => {
                    self.push_line(&format!("+ {}", encode_base64(&c)));
                    self.flush().await?;
                    let (line, lit) = self.next_line().await?;
                    if lit.is_some() {
                        return self
                            .refuse(tag, "BAD", "SASL response must be a base64 line", lit)
                            .await;
                    }
                    if is_cancel(&line) {
                        step = sasl.cancel();
                        continue;
                    }
                    let response = match decode_base64_line(&line) {
                        Ok(r) => r,
                        Err(e) => {
                            let text = format!("SASL response: {e}");
                            return Ok(self.auth_failed(tag, "BAD", &text));
                        }
                    };
                    (sasl, step) = match run_blocking(sasl, move |s| s.step(&response)).await {
                        Some(done) => done,
                        None => return Ok(self.auth_failed(tag, "NO", "Authentication failed")),
                    };
                }
                SaslStep::Success(id) => {
                    self.logged_in(&id.authzid).await;
                    let caps = self.capabilities();
                    self.tagged(
                        tag,
                        "OK",
                        &format!("[CAPABILITY {caps}] AUTHENTICATE completed"),
                    );
                    return Ok(Flow::Continue);
                }
                SaslStep::Failure(SaslFailure::Cancelled) => {
                    self.tagged(tag, "BAD", "Authentication cancelled");
                    return Ok(Flow::Continue);
                }
                SaslStep::Failure(SaslFailure::MalformedResponse(r)) => {
                    let text = format!("Malformed SASL response: {r}");
                    return Ok(self.auth_failed(tag, "BAD", &text));
                }
                SaslStep::Failure(_) => {
                    return Ok(self.auth_failed(
                        tag,
                        "NO",
                        "[AUTHENTICATIONFAILED] Invalid credentials",
                    ));
                }
            }
        }
    }
}
