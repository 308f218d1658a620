//! Authentication shared by both servers: the passwd-file user database ([`passwd`]) and the
//! sans-IO server side of the SASL mechanisms PLAIN and LOGIN ([`sasl`]).
//!
//! Known gap: SCRAM-SHA-256 and GSSAPI are not implemented (see [`sasl`]).

pub mod passwd;
pub mod sasl;

pub use passwd::{
    Argon2Params, PasswdError, PasswdReason, UserDb, hash_password_argon2id,
    hash_password_argon2id_with,
};
pub use sasl::{AuthzPolicy, Identity, Mechanism, SaslFailure, SaslServer, SaslStep};
