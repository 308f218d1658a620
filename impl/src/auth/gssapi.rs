//! SASL `GSSAPI` (Kerberos 5, RFC 4752), the mechanism RFC 3656 §4.2 makes mandatory for
//! MUPDATE, sans-IO: [`GssapiServer`] (server side, the same `start`/`step`/`cancel` →
//! [`SaslStep`] shape as [`SaslServer`](super::SaslServer)) and [`GssapiClient`] (client side,
//! for the slave's link to its master, tests and the conformance runner).
//!
//! Built only with the cargo feature `gssapi` of `murder-server` (off by default), because it
//! links the system GSSAPI library through the `libgssapi` crate: building needs `libkrb5-dev`
//! and `libclang-dev` (bindgen). Tested against MIT Kerberos 1.20 (`impl/tests/kdc/`).
//!
//! # The exchange (RFC 4752 §3.1)
//! 1. The client's first context token is the SASL initial response. Without one (or with an
//!    empty one) the server sends an empty challenge and takes the client's answer as the first
//!    token.
//! 2. The server feeds each token to `GSS_Accept_sec_context` (the Kerberos 5 mechanism only)
//!    and sends every output token as a challenge. When the context is established with a final
//!    output token (Kerberos mutual authentication: the AP-REP), the client answers it with an
//!    empty response, which the server ignores.
//! 3. The server sends the security-layer offer, `GSS_Wrap`ped without confidentiality: one
//!    octet of layers (`0x01`: **"no security layer" is the only layer offered**; integrity and
//!    confidentiality layers are not implemented — run MUPDATE over STARTTLS for protection)
//!    and three octets of maximum message size (0, as no layer is offered).
//! 4. The client answers, wrapped: one octet with exactly the layer it chose (it must be
//!    `0x01`), three octets of size (ignored) and the authzid (UTF-8, possibly empty).
//!
//! # Who the client is
//! The authenticated identity (`Identity::authcid`) is the client principal mapped to a user
//! name by [`map_principal`]: `user@REALM` becomes `user` when `REALM` is the realm of the
//! server's own service principal (the realm the server lives in), otherwise the full principal
//! stays (`user@OTHER.REALM`), so that a foreign realm can never impersonate a local user. Admin
//! lists (`--admin`) and the [`AuthzPolicy`] apply to the mapped name. An authzid different
//! from the mapped name is allowed only for admins, as with PLAIN.
//!
//! # Credentials
//! The server accepts with the key of `SERVICE/HOST@REALM` (a host-based service name
//! `SERVICE@HOST`, e.g. `mupdate@localhost`) from the default keytab: `KRB5_KTNAME`, which
//! `mupdated --keytab FILE` sets before it starts any thread (the MIT library reads it when a
//! credential is acquired; `libgssapi` has no keytab argument). The client uses the default
//! credential cache (`KRB5CCNAME`, filled by `kinit`, e.g. `kinit -k -t client.keytab user`);
//! with a cache collection (`KRB5CCNAME=DIR:/path`) [`GssapiClient::new`] can pick a principal.
//! `KRB5_CONFIG` selects the `krb5.conf`; `KRB5_TRACE=/dev/stderr` shows what the library does.

use std::fmt;

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext, ServerCtx};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL, OidSet};
use tracing::info;

use super::sasl::{AuthzPolicy, Identity, SaslFailure, SaslStep};

/// The mechanism's registered SASL name.
pub const MECHANISM_NAME: &str = super::exchange::GSSAPI;

/// Security-layer bit "no security layer" (RFC 4752 §3.1), the only one offered.
pub const LAYER_NONE: u8 = 0x01;

/// Longest authzid accepted in the client's security-layer message, in octets (as PLAIN's
/// fields, [`super::sasl::MAX_FIELD_LEN`]).
pub const MAX_AUTHZID_LEN: usize = super::sasl::MAX_FIELD_LEN;

/// Why the GSSAPI library refused something (set-up of credentials, or a client step).
#[derive(Debug, Clone, thiserror::Error)]
pub enum GssapiError {
    /// The GSSAPI library failed; the text is the library's major and minor status.
    #[error("{what}: {detail}")]
    Library {
        /// What was being done.
        what: &'static str,
        /// `gss_display_status` of the major and minor codes.
        detail: String,
    },
    /// The peer's message breaks RFC 4752 (which rule).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A step was called after the exchange finished.
    #[error("GSSAPI exchange is not in progress")]
    OutOfSequence,
}

fn library(what: &'static str) -> impl FnOnce(libgssapi::error::Error) -> GssapiError {
    move |e| GssapiError::Library {
        what,
        detail: e.to_string().trim_end().to_owned(),
    }
}

fn krb5_mechs() -> Result<OidSet, GssapiError> {
    OidSet::singleton(GSS_MECH_KRB5).map_err(library("building the mechanism set"))
}

/// The server's credentials for one service name, acquired once at start-up and shared by
/// every exchange (cheap to clone).
#[derive(Clone)]
pub struct GssapiAcceptor {
    cred: Cred,
    service: String,
}

impl fmt::Debug for GssapiAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GssapiAcceptor")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl GssapiAcceptor {
    /// Acceptor credentials for the host-based service `service` (`SERVICE@HOST`, e.g.
    /// `mupdate@localhost`, which Kerberos names `mupdate/localhost@REALM`) from the default
    /// keytab (`KRB5_KTNAME`). Fails when the keytab has no key for it.
    pub fn new(service: &str) -> Result<Self, GssapiError> {
        let name = Name::new(service.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))
            .map_err(library("importing the service name"))?;
        let name = name
            .canonicalize(Some(GSS_MECH_KRB5))
            .map_err(library("canonicalizing the service name"))?;
        let cred = Cred::acquire(Some(&name), None, CredUsage::Accept, Some(&krb5_mechs()?))
            .map_err(library("acquiring acceptor credentials from the keytab"))?;
        Ok(GssapiAcceptor {
            cred,
            service: service.to_owned(),
        })
    }

    /// The host-based service name given to [`GssapiAcceptor::new`].
    pub fn service(&self) -> &str {
        &self.service
    }
}

/// The user name of `principal` (`name@REALM`) for a server in `server_realm`: the name without
/// `@REALM` when the realms are equal, the full principal otherwise (or when it has no realm).
pub fn map_principal(principal: &str, server_realm: &str) -> String {
    match principal.rsplit_once('@') {
        Some((name, realm)) if realm == server_realm && !name.is_empty() => name.to_owned(),
        _ => principal.to_owned(),
    }
}

/// The realm of a principal's display form (`name@REALM`), empty without one.
fn realm_of(principal: &str) -> &str {
    principal.rsplit_once('@').map_or("", |(_, realm)| realm)
}

/// The unwrapped 4-octet security-layer offer the server sends: "no security layer" only,
/// maximum size 0.
pub fn layer_offer() -> [u8; 4] {
    [LAYER_NONE, 0, 0, 0]
}

/// The client's unwrapped answer, parsed: the authzid (empty: none) when the client chose
/// "no security layer".
pub fn parse_layer_choice(message: &[u8]) -> Result<&str, SaslFailure> {
    let Some((&layer, rest)) = message.split_first() else {
        return Err(SaslFailure::MalformedResponse(
            "security-layer message shorter than 4 octets",
        ));
    };
    let Some(authzid) = rest.get(3..) else {
        return Err(SaslFailure::MalformedResponse(
            "security-layer message shorter than 4 octets",
        ));
    };
    if layer != LAYER_NONE {
        return Err(SaslFailure::MalformedResponse(
            "client chose a security layer other than none",
        ));
    }
    if authzid.len() > MAX_AUTHZID_LEN {
        return Err(SaslFailure::MalformedResponse(
            "authzid longer than 255 octets",
        ));
    }
    if authzid.contains(&0) {
        return Err(SaslFailure::MalformedResponse("NUL in authzid"));
    }
    std::str::from_utf8(authzid).map_err(|_| SaslFailure::MalformedResponse("authzid is not UTF-8"))
}

/// Where a server exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// `start` not called yet.
    Initial,
    /// Feeding client tokens to `GSS_Accept_sec_context`.
    Accepting,
    /// The context is established and its last token sent; awaiting the empty response.
    AwaitingEmpty,
    /// The wrapped layer offer was sent; awaiting the client's wrapped choice.
    AwaitingLayer,
    /// Success or failure was returned.
    Done,
}

/// One GSSAPI exchange on the server side; the same life cycle as
/// [`SaslServer`](super::SaslServer): [`start`](GssapiServer::start) with the initial response,
/// [`step`](GssapiServer::step) with every response, until success or failure.
pub struct GssapiServer {
    ctx: ServerCtx,
    policy: AuthzPolicy,
    state: ServerState,
}

impl fmt::Debug for GssapiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GssapiServer")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl GssapiServer {
    /// A new exchange accepting with `acceptor`'s credentials.
    pub fn new(acceptor: &GssapiAcceptor, policy: AuthzPolicy) -> Self {
        GssapiServer {
            ctx: ServerCtx::new(Some(acceptor.cred.clone())),
            policy,
            state: ServerState::Initial,
        }
    }

    /// Begins the exchange. `initial`: the client's first context token; `None` or empty makes
    /// the server send an empty challenge to ask for it.
    pub fn start(&mut self, initial: Option<&[u8]>) -> SaslStep {
        if self.state != ServerState::Initial {
            return self.finish(SaslFailure::OutOfSequence);
        }
        self.state = ServerState::Accepting;
        match initial {
            Some(token) if !token.is_empty() => self.accept(token),
            _ => SaslStep::Challenge(Vec::new()),
        }
    }

    /// Feeds the client's (base64-decoded) response to the last challenge.
    pub fn step(&mut self, response: &[u8]) -> SaslStep {
        match self.state {
            ServerState::Accepting => self.accept(response),
            // RFC 4752 §3.1: the client's answer to the last context token carries nothing.
            ServerState::AwaitingEmpty => self.offer_layers(),
            ServerState::AwaitingLayer => self.layer_choice(response),
            ServerState::Initial | ServerState::Done => self.finish(SaslFailure::OutOfSequence),
        }
    }

    /// Ends the exchange because the client sent `*`.
    pub fn cancel(&mut self) -> SaslStep {
        self.finish(SaslFailure::Cancelled)
    }

    /// Whether the exchange has ended (success or failure).
    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    fn finish(&mut self, failure: SaslFailure) -> SaslStep {
        self.state = ServerState::Done;
        SaslStep::Failure(failure)
    }

    fn accept(&mut self, token: &[u8]) -> SaslStep {
        if token.is_empty() {
            return self.finish(SaslFailure::MalformedResponse("empty GSSAPI token"));
        }
        match self.ctx.step(token, None) {
            Err(e) => {
                info!(error = %e.to_string().trim_end(), "GSSAPI context not accepted");
                self.finish(SaslFailure::BadCredentials)
            }
            Ok(out) => {
                let complete = self.ctx.is_complete();
                match (complete, out) {
                    (false, Some(token)) => SaslStep::Challenge(token.to_vec()),
                    (false, None) => {
                        self.finish(SaslFailure::MalformedResponse("GSSAPI context stalled"))
                    }
                    (true, Some(token)) => {
                        self.state = ServerState::AwaitingEmpty;
                        SaslStep::Challenge(token.to_vec())
                    }
                    (true, None) => self.offer_layers(),
                }
            }
        }
    }

    fn offer_layers(&mut self) -> SaslStep {
        match self.ctx.wrap(false, &layer_offer()) {
            Ok(wrapped) => {
                self.state = ServerState::AwaitingLayer;
                SaslStep::Challenge(wrapped.to_vec())
            }
            Err(e) => {
                info!(error = %e.to_string().trim_end(), "GSS_Wrap failed");
                self.finish(SaslFailure::BadCredentials)
            }
        }
    }

    fn layer_choice(&mut self, response: &[u8]) -> SaslStep {
        self.state = ServerState::Done;
        let message = match self.ctx.unwrap(response) {
            Ok(m) => m,
            Err(e) => {
                info!(error = %e.to_string().trim_end(), "GSS_Unwrap of the layer choice failed");
                return SaslStep::Failure(SaslFailure::MalformedResponse(
                    "security-layer message does not unwrap",
                ));
            }
        };
        let authzid = match parse_layer_choice(&message) {
            Ok(a) => a.to_owned(),
            Err(f) => return SaslStep::Failure(f),
        };
        let names = self
            .ctx
            .source_name()
            .and_then(|s| s.display_name())
            .and_then(|client| {
                self.ctx
                    .target_name()
                    .and_then(|t| t.display_name())
                    .map(|server| (client, server))
            });
        let (client, server) = match names {
            Ok((c, s)) => (
                String::from_utf8_lossy(&c).into_owned(),
                String::from_utf8_lossy(&s).into_owned(),
            ),
            Err(e) => {
                info!(error = %e.to_string().trim_end(), "GSSAPI names unavailable");
                return SaslStep::Failure(SaslFailure::BadCredentials);
            }
        };
        let authcid = map_principal(&client, realm_of(&server));
        let authzid = if authzid.is_empty() {
            authcid.clone()
        } else {
            authzid
        };
        info!(principal = %client, service = %server, user = %authcid, "GSSAPI context accepted");
        if !self.policy.allows(&authcid, &authzid) {
            return SaslStep::Failure(SaslFailure::AuthzDenied);
        }
        SaslStep::Success(Identity { authcid, authzid })
    }
}

/// Where a client exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// No token produced yet.
    Initial,
    /// Exchanging context tokens.
    Establishing,
    /// The context is established; the next challenge is the wrapped layer offer.
    AwaitingOffer,
    /// The layer choice was sent (or the exchange failed).
    Done,
}

/// One GSSAPI exchange on the client side, sans-IO: [`initial_response`] gives the SASL
/// initial response, [`step`] turns each server challenge into the response to send; after
/// the response to the layer offer, [`is_done`] is true and the server's OK is expected.
///
/// [`initial_response`]: GssapiClient::initial_response
/// [`step`]: GssapiClient::step
/// [`is_done`]: GssapiClient::is_done
pub struct GssapiClient {
    ctx: ClientCtx,
    authzid: String,
    state: ClientState,
}

impl fmt::Debug for GssapiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GssapiClient")
            .field("authzid", &self.authzid)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl GssapiClient {
    /// A client for the host-based service `service` (`mupdate@HOST`), with the credentials of
    /// `principal` (`user@REALM`; `None`: the default principal of the credential cache,
    /// `KRB5CCNAME`), asking to act as `authzid` (empty: as itself). Fails when there is no
    /// ticket-granting ticket for the principal.
    pub fn new(service: &str, principal: Option<&str>, authzid: &str) -> Result<Self, GssapiError> {
        let target = Name::new(service.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))
            .map_err(library("importing the service name"))?;
        let mechs = krb5_mechs()?;
        let name = principal
            .map(|p| {
                Name::new(p.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
                    .map_err(library("importing the client principal"))
            })
            .transpose()?;
        let cred = Cred::acquire(name.as_ref(), None, CredUsage::Initiate, Some(&mechs))
            .map_err(library("acquiring client credentials from the ccache"))?;
        let flags = CtxFlags::GSS_C_MUTUAL_FLAG | CtxFlags::GSS_C_INTEG_FLAG;
        Ok(GssapiClient {
            ctx: ClientCtx::new(Some(cred), target, flags, Some(GSS_MECH_KRB5)),
            authzid: authzid.to_owned(),
            state: ClientState::Initial,
        })
    }

    /// The first context token, to send as the SASL initial response. Contacts the KDC for a
    /// service ticket if the cache has none (blocking).
    pub fn initial_response(&mut self) -> Result<Vec<u8>, GssapiError> {
        if self.state != ClientState::Initial {
            return Err(self.fail(GssapiError::OutOfSequence));
        }
        self.init_step(None)
    }

    /// The response to the server's `challenge` (base64-decoded). An empty challenge before any
    /// token (a server that wants the first token) is answered with the first token.
    pub fn step(&mut self, challenge: &[u8]) -> Result<Vec<u8>, GssapiError> {
        match self.state {
            ClientState::Initial if challenge.is_empty() => self.init_step(None),
            ClientState::Initial => Err(self.fail(GssapiError::Protocol(
                "non-empty challenge before the first token",
            ))),
            ClientState::Establishing => self.init_step(Some(challenge)),
            ClientState::AwaitingOffer => self.choose_layer(challenge),
            ClientState::Done => Err(self.fail(GssapiError::OutOfSequence)),
        }
    }

    /// Whether the last response has been produced (or the exchange failed).
    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }

    fn fail(&mut self, e: GssapiError) -> GssapiError {
        self.state = ClientState::Done;
        e
    }

    fn init_step(&mut self, token: Option<&[u8]>) -> Result<Vec<u8>, GssapiError> {
        match self.ctx.step(token, None) {
            Err(e) => Err(self.fail(library("establishing the security context")(e))),
            Ok(out) => {
                self.state = if self.ctx.is_complete() {
                    ClientState::AwaitingOffer
                } else {
                    ClientState::Establishing
                };
                // Complete without a token: RFC 4752 §3.1 says answer with an empty response.
                Ok(out.map(|t| t.to_vec()).unwrap_or_default())
            }
        }
    }

    fn choose_layer(&mut self, challenge: &[u8]) -> Result<Vec<u8>, GssapiError> {
        self.state = ClientState::Done;
        let offer = self
            .ctx
            .unwrap(challenge)
            .map_err(library("unwrapping the security-layer offer"))?;
        let Some(&layers) = offer.first() else {
            return Err(GssapiError::Protocol("empty security-layer offer"));
        };
        if offer.len() != 4 {
            return Err(GssapiError::Protocol(
                "security-layer offer is not 4 octets",
            ));
        }
        if layers & LAYER_NONE == 0 {
            return Err(GssapiError::Protocol(
                "server requires a security layer (only none is implemented)",
            ));
        }
        let mut choice = vec![LAYER_NONE, 0, 0, 0];
        choice.extend_from_slice(self.authzid.as_bytes());
        let wrapped = self
            .ctx
            .wrap(false, &choice)
            .map_err(library("wrapping the security-layer choice"))?;
        Ok(wrapped.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_mapping() {
        assert_eq!(map_principal("alice@MURDER.TEST", "MURDER.TEST"), "alice");
        assert_eq!(
            map_principal("alice@OTHER.TEST", "MURDER.TEST"),
            "alice@OTHER.TEST"
        );
        assert_eq!(
            map_principal("mupdate/slave@MURDER.TEST", "MURDER.TEST"),
            "mupdate/slave"
        );
        // Realm comparison is exact (Kerberos realms are case-sensitive).
        assert_eq!(
            map_principal("alice@murder.test", "MURDER.TEST"),
            "alice@murder.test"
        );
        assert_eq!(map_principal("alice", "MURDER.TEST"), "alice");
        assert_eq!(map_principal("@MURDER.TEST", "MURDER.TEST"), "@MURDER.TEST");
        assert_eq!(realm_of("mupdate/localhost@MURDER.TEST"), "MURDER.TEST");
        assert_eq!(realm_of("nobody"), "");
    }

    #[test]
    fn layer_messages() {
        assert_eq!(layer_offer(), [1, 0, 0, 0]);
        assert_eq!(parse_layer_choice(&[1, 0, 0, 0]), Ok(""));
        assert_eq!(parse_layer_choice(b"\x01\0\0\0alice"), Ok("alice"));
        assert_eq!(parse_layer_choice(b"\x01\xff\xff\xffadmin"), Ok("admin"));
        let short = Err(SaslFailure::MalformedResponse(
            "security-layer message shorter than 4 octets",
        ));
        assert_eq!(parse_layer_choice(b""), short);
        assert_eq!(parse_layer_choice(&[1, 0, 0]), short);
        for layer in [0u8, 2, 3, 4, 7] {
            assert_eq!(
                parse_layer_choice(&[layer, 0, 0, 0]),
                Err(SaslFailure::MalformedResponse(
                    "client chose a security layer other than none"
                ))
            );
        }
        assert_eq!(
            parse_layer_choice(b"\x01\0\0\0al\xffice"),
            Err(SaslFailure::MalformedResponse("authzid is not UTF-8"))
        );
        assert_eq!(
            parse_layer_choice(b"\x01\0\0\0a\0b"),
            Err(SaslFailure::MalformedResponse("NUL in authzid"))
        );
        let mut long = vec![1, 0, 0, 0];
        long.extend(std::iter::repeat_n(b'a', 256));
        assert_eq!(
            parse_layer_choice(&long),
            Err(SaslFailure::MalformedResponse(
                "authzid longer than 255 octets"
            ))
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_layer_choice_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_layer_choice(&bytes);
        }
    }
}
