//! Test support for the GSSAPI tests (`gssapi_mupdate`, `gssapi_imapd`): the throw-away KDC that
//! `impl/tests/kdc/kdc.sh start DIR` made, found through the sourced `DIR/env`.
#![allow(clippy::expect_used, dead_code)]

use std::path::PathBuf;

/// The realm `kdc.sh` creates.
pub const REALM: &str = "MURDER.TEST";

/// The KDC's directory (keytabs, ccache); panics with the recipe when no KDC env is sourced.
pub fn kdc_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("MURDER_KDC_DIR").expect(
        "MURDER_KDC_DIR unset: run impl/tests/kdc/kdc.sh start DIR and source DIR/env first",
    ))
}

/// `user@MURDER.TEST`.
pub fn principal(user: &str) -> String {
    format!("{user}@{REALM}")
}
