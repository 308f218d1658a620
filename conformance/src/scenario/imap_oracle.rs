//! The IMAP side of the validator: a scenario's CREATE, DELETE and APPEND commands simulated on
//! the model's `MailStore` (RFC 3502, UIDPLUS), so a case cannot expect OK where the model
//! requires NO: an APPEND to a mailbox this case deleted or never created (`[TRYCREATE]`), a
//! MULTIAPPEND with a zero-length message (RFC 3502 6.3.11), a CREATE of a mailbox it created
//! already, a command before login. Names the case did not create (INBOX...) are not judged.

use std::collections::{HashMap, HashSet};

use murder_model::multiappend::{AppendMessage, AppendOutcome, MailStore, MessageFault};

use super::oracle::{Expected, Status};
use crate::wire::frame::Framer;
use crate::wire::token::{Token, tokenize};

#[derive(Debug, Default)]
struct ConnSim {
    authed: bool,
    framer: Framer,
    pending_login: Vec<Vec<u8>>,
}

/// The simulation of one IMAP scenario.
#[derive(Debug, Default)]
pub struct ImapSim {
    store: MailStore,
    known: HashSet<String>,
    conns: HashMap<String, ConnSim>,
    pending: HashMap<(String, Vec<u8>), Expected>,
}

fn word(t: Option<&Token>) -> Option<Vec<u8>> {
    match t? {
        Token::Atom(a) => Some(a.clone()),
        other => other.string_value().map(<[u8]>::to_vec),
    }
}

impl ImapSim {
    /// A connection opened, logged in or not.
    pub fn open(&mut self, conn: &str, logged_in: bool) {
        self.conns.insert(
            conn.to_string(),
            ConnSim {
                authed: logged_in,
                ..ConnSim::default()
            },
        );
    }

    /// The runner logged the connection in.
    pub fn logged_in(&mut self, conn: &str) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.authed = true;
        }
    }

    /// The connection is gone.
    pub fn close(&mut self, conn: &str) {
        self.conns.remove(conn);
    }

    /// Bytes written on `conn`; complete commands are simulated.
    pub fn sent(&mut self, conn: &str, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.framer.push(bytes);
        let mut lines = Vec::new();
        while let Ok(Some(l)) = c.framer.next_line() {
            lines.push(l.bytes);
        }
        for line in lines {
            self.command(conn, &line);
        }
    }

    fn command(&mut self, conn: &str, line: &[u8]) {
        let toks: Vec<Token> = tokenize(line).into_iter().map(|t| t.token).collect();
        let Some(tag) = word(toks.first()) else {
            return;
        };
        let cmd = word(toks.get(1)).unwrap_or_default().to_ascii_uppercase();
        let authed = self.conns.get(conn).is_some_and(|c| c.authed);
        let mailbox = word(toks.get(2)).map(|m| String::from_utf8_lossy(&m).into_owned());
        let expected = match cmd.as_slice() {
            b"CAPABILITY" | b"NOOP" | b"LOGOUT" | b"STARTTLS" => Expected::Unknown,
            b"LOGIN" | b"AUTHENTICATE" => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.pending_login.push(tag.clone());
                }
                Expected::Unknown
            }
            _ if !authed => Expected::Refused("not authenticated (RFC 3501 6.2)"),
            b"CREATE" => match mailbox {
                Some(m) => {
                    let fresh = self.store.create(&m);
                    self.known.insert(m);
                    if fresh {
                        Expected::Unknown
                    } else {
                        Expected::Refused("the mailbox exists (RFC 3501 6.3.3)")
                    }
                }
                None => Expected::Unknown,
            },
            b"DELETE" => match mailbox {
                Some(m) if self.known.contains(&m) => {
                    if self.store.delete(&m) {
                        Expected::Unknown
                    } else {
                        Expected::Refused("the mailbox does not exist (RFC 3501 6.3.4)")
                    }
                }
                _ => Expected::Unknown,
            },
            b"APPEND" => match mailbox {
                Some(m) if self.known.contains(&m) => {
                    let mut msgs = Vec::new();
                    for t in toks.iter().skip(3) {
                        if let Token::Literal { data, .. } = t {
                            msgs.push(AppendMessage {
                                flags: Vec::new(),
                                size: data.len() as u64,
                                content: 0,
                                fault: data.is_empty().then_some(MessageFault::ZeroLength),
                            });
                        }
                    }
                    if msgs.is_empty() {
                        Expected::Unknown
                    } else {
                        match self.store.append(&m, &msgs) {
                            // The model cannot see every fault (flags, dates, limits): an OK
                            // from the model does not make a NO wrong.
                            AppendOutcome::Ok { .. } => Expected::Unknown,
                            AppendOutcome::TryCreate => Expected::Refused(
                                "no such mailbox: NO [TRYCREATE] (RFC 3502 6.3.11)",
                            ),
                            AppendOutcome::Refused(_) => Expected::Refused(
                                "a zero-length message makes the whole APPEND fail (RFC 3502 6.3.11)",
                            ),
                        }
                    }
                }
                _ => Expected::Unknown,
            },
            _ => Expected::Unknown,
        };
        self.pending.insert((conn.to_string(), tag), expected);
    }

    /// The completion of `tag` on `conn` is expected with one of `statuses`.
    pub fn completed(&mut self, conn: &str, tag: &[u8], statuses: &[Status]) -> Result<(), String> {
        let key = (conn.to_string(), tag.to_vec());
        let Some(e) = self.pending.remove(&key) else {
            return Ok(());
        };
        if let Some(c) = self.conns.get_mut(conn)
            && let Some(pos) = c.pending_login.iter().position(|t| t == tag)
        {
            c.pending_login.remove(pos);
            if statuses == [Status::Ok] {
                c.authed = true;
            }
        }
        if statuses.iter().any(|s| e.allows(*s)) {
            Ok(())
        } else {
            Err(format!("the model requires {}", e.describe()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_rules() {
        let mut s = ImapSim::default();
        s.open("c", true);
        s.sent(
            "c",
            b"C1 CREATE \"box\"\r\nA1 APPEND \"box\" {1+}\r\na {0+}\r\n\r\n",
        );
        assert!(s.completed("c", b"C1", &[Status::Ok]).is_ok());
        assert!(s.completed("c", b"A1", &[Status::Ok]).is_err());
        s.sent("c", b"D1 DELETE \"box\"\r\nA2 APPEND \"box\" {1+}\r\na\r\nA3 APPEND \"INBOX\" {1+}\r\na\r\n");
        assert!(s.completed("c", b"D1", &[Status::Ok]).is_ok());
        let e = s.completed("c", b"A2", &[Status::Ok]).unwrap_err();
        assert!(e.contains("TRYCREATE"), "{e}");
        assert!(s.completed("c", b"A3", &[Status::Ok]).is_ok());
    }

    #[test]
    fn before_login_is_refused() {
        let mut s = ImapSim::default();
        s.open("c", false);
        s.sent("c", b"C1 CREATE \"x\"\r\nL1 LOGIN \"u\" \"p\"\r\n");
        assert!(s.completed("c", b"C1", &[Status::Ok]).is_err());
        assert!(s.completed("c", b"L1", &[Status::Ok]).is_ok());
        s.sent("c", b"C2 CREATE \"x\"\r\n");
        assert!(s.completed("c", b"C2", &[Status::Ok]).is_ok());
    }
}
