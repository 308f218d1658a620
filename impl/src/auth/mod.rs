//! Authentication shared by both servers: the passwd-file user database ([`passwd`]), the
//! sans-IO server side of the SASL mechanisms PLAIN and LOGIN ([`sasl`]) and, with the cargo
//! feature `gssapi`, SASL GSSAPI (Kerberos 5, RFC 4752) server and client (`gssapi`); and
//! [`exchange`], the one server-side exchange type both servers' AUTHENTICATE loops drive.
//!
//! Known gap: SCRAM-SHA-256 is not implemented (see [`sasl`]).

pub mod exchange;
#[cfg(feature = "gssapi")]
pub mod gssapi;
pub mod keytab;
pub mod passwd;
pub mod sasl;

pub use passwd::{
    Argon2Params, PasswdError, PasswdReason, UserDb, hash_password_argon2id,
    hash_password_argon2id_with,
};
pub use sasl::{AuthzPolicy, Identity, Mechanism, SaslFailure, SaslServer, SaslStep};
