//! The per-case values of placeholders (README section 4): unique names and credentials.

use base64::Engine as _;

use super::template::Env;

/// Credentials the runner logs in with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Main user (an admin for MUPDATE).
    pub user: Option<(String, String)>,
    /// Second user.
    pub user2: Option<(String, String)>,
}

/// The prefix shared by every name of case `index` in run `run`: `ct<run>n<index>`. The run id is
/// hex, so the `n` separates it from the index, and a following letter ends the index: no case's
/// names are a prefix of another case's.
pub fn name_prefix(run: &str, index: usize) -> String {
    format!("ct{run}n{index}")
}

/// The letters that end `$box` .. `$box9`; `$host`s use `z` + the same letter.
const LETTERS: [char; 9] = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'];

/// Every fixed placeholder value of one case.
pub fn case_env(run: &str, index: usize, creds: &Credentials) -> Env {
    let mut env = Env::default();
    let prefix = name_prefix(run, index);
    for (i, l) in LETTERS.iter().enumerate() {
        let suffix = if i == 0 {
            String::new()
        } else {
            (i + 1).to_string()
        };
        env.set(&format!("box{suffix}"), format!("{prefix}{l}"));
        env.set(&format!("host{suffix}"), format!("{prefix}z{l}"));
    }
    env.set("run", run);
    let plain =
        |u: &str, p: &str| base64::engine::general_purpose::STANDARD.encode(format!("\0{u}\0{p}"));
    let (u, p) = creds.user.clone().unwrap_or_default();
    env.set("user", u.clone());
    env.set("pass", p.clone());
    env.set("plain", plain(&u, &p));
    let (u2, p2) = creds.user2.clone().unwrap_or_default();
    env.set("user2", u2.clone());
    env.set("pass2", p2.clone());
    env.set("plain2", plain(&u2, &p2));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_not_prefixes_of_each_other() {
        let creds = Credentials::default();
        let mut all = Vec::new();
        for idx in [1, 12, 123] {
            let env = case_env("0a1b2c", idx, &creds);
            for k in ["box", "box2", "box9", "host", "host2", "host9"] {
                all.push(env.get(k).unwrap().to_vec());
            }
        }
        for a in &all {
            for b in &all {
                if a != b {
                    assert!(!b.starts_with(a), "{:?} prefixes {:?}", a, b);
                }
            }
        }
    }

    #[test]
    fn plain_is_the_sasl_initial_response() {
        let creds = Credentials {
            user: Some(("u".into(), "p".into())),
            user2: None,
        };
        assert_eq!(
            case_env("000000", 0, &creds).get("plain"),
            Some(&b"AHUAcA=="[..])
        );
    }
}
