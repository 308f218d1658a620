//! Typed MUPDATE commands (RFC 3656 section 4) from raw decoded commands.

use murder_model::mailbox_db::Command;
use murder_model::session::CommandKind;

use super::codec::{RawCommand, Token};

/// A command with its arguments checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `AUTHENTICATE mechanism [initial-response]`; `=` (atom or string) is an empty response.
    Authenticate {
        /// The mechanism name, upper-cased.
        mechanism: String,
        /// The base64 initial response, if any (empty for `=`).
        initial: Option<Vec<u8>>,
    },
    /// A database command (ACTIVATE, RESERVE, DEACTIVATE, DELETE, FIND, LIST).
    Db(Command),
    /// `NOOP`.
    Noop,
    /// `LOGOUT`.
    Logout,
    /// `STARTTLS`.
    Starttls,
    /// `UPDATE`.
    Update,
}

/// Why a command's arguments are wrong: answered BAD.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// Fewer arguments than the command needs.
    #[error("Missing arguments")]
    Missing,
    /// More arguments than the command takes.
    #[error("Extra arguments")]
    Extra,
    /// An atom where a string is required (RFC 3656 2: data is quoted or a literal).
    #[error("arguments must be strings")]
    AtomNotString,
    /// The mechanism name is not valid.
    #[error("invalid mechanism name")]
    BadMechanism,
}

fn strings(args: &[Token], min: usize, max: usize) -> Result<Vec<Vec<u8>>, ArgError> {
    if args.len() < min {
        return Err(ArgError::Missing);
    }
    if args.len() > max {
        return Err(ArgError::Extra);
    }
    args.iter()
        .map(|t| match t {
            Token::String(s) => Ok(s.clone()),
            Token::Atom(_) => Err(ArgError::AtomNotString),
        })
        .collect()
}

/// Parse the arguments of `raw`, whose word is `kind`.
pub fn parse(kind: CommandKind, raw: &RawCommand) -> Result<Request, ArgError> {
    let a = &raw.args;
    let take = |min, max| strings(a, min, max).map(|v| v.into_iter());
    Ok(match kind {
        CommandKind::Authenticate => {
            let (mech, initial) = match a.as_slice() {
                [] => return Err(ArgError::Missing),
                [m] => (m, None),
                [m, i] => (m, Some(i)),
                _ => return Err(ArgError::Extra),
            };
            let mechanism = match mech {
                Token::Atom(m) | Token::String(m) => m,
            };
            if mechanism.is_empty()
                || mechanism.len() > 64
                || !mechanism.iter().all(|&b| b.is_ascii_graphic())
            {
                return Err(ArgError::BadMechanism);
            }
            let initial = match initial {
                None => None,
                Some(Token::Atom(x) | Token::String(x)) if x.as_slice() == b"=" => Some(Vec::new()),
                Some(Token::String(x)) => Some(x.clone()),
                Some(Token::Atom(_)) => return Err(ArgError::AtomNotString),
            };
            Request::Authenticate {
                mechanism: String::from_utf8_lossy(mechanism).to_ascii_uppercase(),
                initial,
            }
        }
        CommandKind::Activate => {
            let mut v = take(3, 3)?;
            Request::Db(Command::Activate {
                name: v.next().unwrap_or_default(),
                location: v.next().unwrap_or_default(),
                acl: v.next().unwrap_or_default(),
            })
        }
        CommandKind::Reserve => {
            let mut v = take(2, 2)?;
            Request::Db(Command::Reserve {
                name: v.next().unwrap_or_default(),
                location: v.next().unwrap_or_default(),
            })
        }
        CommandKind::Deactivate => {
            let mut v = take(2, 2)?;
            Request::Db(Command::Deactivate {
                name: v.next().unwrap_or_default(),
                location: v.next().unwrap_or_default(),
            })
        }
        CommandKind::Delete => Request::Db(Command::Delete {
            name: take(1, 1)?.next().unwrap_or_default(),
        }),
        CommandKind::Find => Request::Db(Command::Find {
            name: take(1, 1)?.next().unwrap_or_default(),
        }),
        CommandKind::List => Request::Db(Command::List {
            prefix: take(0, 1)?.next(),
        }),
        CommandKind::Noop => {
            take(0, 0)?;
            Request::Noop
        }
        CommandKind::Logout => {
            take(0, 0)?;
            Request::Logout
        }
        CommandKind::Starttls => {
            take(0, 0)?;
            Request::Starttls
        }
        CommandKind::Update => {
            take(0, 0)?;
            Request::Update
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(word: &str, args: Vec<Token>) -> RawCommand {
        RawCommand {
            tag: b"T".to_vec(),
            word: word.into(),
            args,
        }
    }
    fn s(x: &str) -> Token {
        Token::String(x.into())
    }
    fn atom(x: &str) -> Token {
        Token::Atom(x.into())
    }

    #[test]
    fn arity_and_atoms() {
        use CommandKind as K;
        assert_eq!(parse(K::Find, &raw("FIND", vec![])), Err(ArgError::Missing));
        assert_eq!(
            parse(K::Find, &raw("FIND", vec![s("a"), s("b")])),
            Err(ArgError::Extra)
        );
        assert_eq!(
            parse(K::Find, &raw("FIND", vec![atom("a")])),
            Err(ArgError::AtomNotString)
        );
        assert_eq!(
            parse(K::Noop, &raw("NOOP", vec![atom("x")])),
            Err(ArgError::Extra)
        );
        assert_eq!(
            parse(K::Activate, &raw("ACTIVATE", vec![s("a"), s("b")])),
            Err(ArgError::Missing)
        );
        assert_eq!(
            parse(K::List, &raw("LIST", vec![])),
            Ok(Request::Db(Command::List { prefix: None }))
        );
    }

    #[test]
    fn authenticate_forms() {
        let k = CommandKind::Authenticate;
        for (args, initial) in [
            (vec![atom("plain")], None),
            (vec![s("PLAIN"), atom("=")], Some(vec![])),
            (vec![s("PLAIN"), s("=")], Some(vec![])),
            (
                vec![atom("PLAIN"), s("AGEAYg==")],
                Some(b"AGEAYg==".to_vec()),
            ),
        ] {
            assert_eq!(
                parse(k, &raw("AUTHENTICATE", args)),
                Ok(Request::Authenticate {
                    mechanism: "PLAIN".into(),
                    initial
                })
            );
        }
        assert_eq!(
            parse(k, &raw("AUTHENTICATE", vec![])),
            Err(ArgError::Missing)
        );
        assert_eq!(
            parse(k, &raw("AUTHENTICATE", vec![s("PLAIN"), atom("AGEAYg")])),
            Err(ArgError::AtomNotString)
        );
    }
}
