//! Stand-in for `crate::auth::passwd::UserDb` until the shared auth module lands on main:
//! `name:{PLAIN}password` lines only. Replaced by the shared type at merge time.

use std::collections::BTreeMap;

/// A passwd-style user database (`name:{PLAIN}password`).
#[derive(Clone, Debug, Default)]
pub struct UserDb {
    users: BTreeMap<String, Vec<u8>>,
}

impl UserDb {
    /// Parse the file text.
    pub fn parse(text: &str) -> Result<UserDb, String> {
        let mut users = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, pw)) = line.split_once(':') else {
                return Err(format!("line {}: missing ':'", i + 1));
            };
            let Some(pw) = pw.strip_prefix("{PLAIN}") else {
                return Err(format!("line {}: only {{PLAIN}} supported", i + 1));
            };
            users.insert(name.to_string(), pw.as_bytes().to_vec());
        }
        Ok(UserDb { users })
    }

    /// Load a file.
    pub fn load(path: &std::path::Path) -> Result<UserDb, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Self::parse(&text)
    }

    /// Whether `user` has password `password`.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.users.get(user).is_some_and(|p| p == password)
    }

    /// Whether `user` exists.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}
