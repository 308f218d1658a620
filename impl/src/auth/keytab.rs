//! The server's Kerberos keytab: `--keytab FILE` of both `mupdated` and `imapd`.
//!
//! `libgssapi` has no keytab argument, so the keytab is made the process's default keytab
//! (`KRB5_KTNAME=FILE:/absolute/path`), which the MIT library reads when acceptor credentials
//! are acquired (`GssapiAcceptor::new`). Setting an environment variable is only sound while
//! no other thread runs, hence [`use_keytab`] is `unsafe` and called first thing in `main`.

use std::path::{Path, PathBuf};

/// Why `--keytab` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeytabError {
    /// The file does not exist (or is not a regular file).
    #[error("--keytab {0}: no such file")]
    Missing(PathBuf),
    /// The path cannot be made absolute.
    #[error("--keytab {0}: {1}")]
    Path(PathBuf, std::io::Error),
    /// The binary was built without the cargo feature `gssapi`.
    #[error("--keytab needs a binary built with the cargo feature `gssapi`")]
    NoGssapi,
}

/// Makes `keytab` the default keytab of the Kerberos library (`KRB5_KTNAME`).
///
/// # Safety
/// Sets an environment variable: call it before any other thread exists (before the tokio
/// runtime is built), as `std::env::set_var` requires.
#[allow(unsafe_code)]
pub unsafe fn use_keytab(keytab: &Path) -> Result<(), KeytabError> {
    let abs = std::path::absolute(keytab).map_err(|e| KeytabError::Path(keytab.into(), e))?;
    if !abs.is_file() {
        return Err(KeytabError::Missing(abs));
    }
    if cfg!(not(feature = "gssapi")) {
        return Err(KeytabError::NoGssapi);
    }
    let mut value = std::ffi::OsString::from("FILE:");
    value.push(abs.as_os_str());
    // SAFETY: the caller guarantees that no other thread reads or writes the environment.
    unsafe { std::env::set_var("KRB5_KTNAME", value) };
    Ok(())
}
