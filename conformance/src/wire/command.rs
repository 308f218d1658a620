//! The MUPDATE commands a scenario sends, read back from the bytes it wrote (RFC 3656 section 5
//! syntax), so the oracle can say what the server must answer. Sans-IO: feed the bytes of every
//! write, take complete commands.
//!
//! This is deliberately the *runner's* reading of the grammar. Arguments other than the
//! AUTHENTICATE mechanism must be strings (quoted or literal): an atom argument is a syntax
//! error, as are missing or extra arguments.

use murder_model::Command;
use murder_model::session::CommandKind;

/// A synchronizing literal larger than this is taken as a probe the server must refuse (no
/// `+ go ahead`): the command ends at its line, and the data is not waited for.
pub const MAX_SYNC_LITERAL: u64 = 64 * 1024;

/// One complete command line as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentCommand {
    /// The tag (first word), possibly empty.
    pub tag: Vec<u8>,
    /// The command word as sent.
    pub word: Vec<u8>,
    /// What the runner understands the command to be.
    pub parsed: Parsed,
}

/// The runner's understanding of a sent command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A database command (ACTIVATE, RESERVE, DEACTIVATE, DELETE, FIND, LIST).
    Db(Command),
    /// Another known command with well-formed arguments (NOOP, LOGOUT, UPDATE, AUTHENTICATE,
    /// STARTTLS).
    Session(CommandKind),
    /// UPDATE with a host list (the Cyrus PARTIAL-UPDATE extension): not judged.
    PartialUpdate,
    /// A known command word with malformed arguments: the server must not run it.
    Syntax(CommandKind),
    /// An unknown word, an empty line, or a line the runner cannot read: not judged.
    Unknown,
}

/// Reassembles the commands from the bytes of successive writes.
#[derive(Clone, Debug, Default)]
pub struct CommandReader {
    buf: Vec<u8>,
}

#[derive(Debug)]
enum Arg {
    Str(Vec<u8>),
    Atom,
}

impl CommandReader {
    /// Add bytes written to the server.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete command, or `None` until more bytes arrive.
    pub fn next_command(&mut self) -> Option<SentCommand> {
        let (cmd, used) = parse(&self.buf)?;
        self.buf.drain(..used);
        Some(cmd)
    }
}

/// Parse one command from the start of `buf`: the command and the bytes it used.
fn parse(buf: &[u8]) -> Option<(SentCommand, usize)> {
    let lf = buf.iter().position(|&b| b == b'\n')?;
    let first = buf.get(..lf)?;
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let sp = first.iter().position(|&b| b == b' ');
    let (tag, rest_start) = match sp {
        Some(i) => (first.get(..i)?.to_vec(), i + 1),
        None => (first.to_vec(), first.len()),
    };
    let word_end = buf
        .get(rest_start..)?
        .iter()
        .position(|&b| matches!(b, b' ' | b'\r' | b'\n'))
        .map(|p| rest_start + p)?;
    let word = buf.get(rest_start..word_end)?.to_vec();
    let mut pos = word_end;
    let mut args = Vec::new();
    let mut syntax_ok = sp.is_some() && !word.is_empty() && !tag.is_empty();
    loop {
        match buf.get(pos) {
            None => return None,
            Some(b'\r') if buf.get(pos + 1) == Some(&b'\n') => {
                pos += 2;
                break;
            }
            Some(b'\n') => {
                pos += 1;
                break;
            }
            Some(b' ') => {
                pos += 1;
                match arg(buf, pos)? {
                    ArgOutcome::Arg(a, next) => {
                        args.push(a);
                        pos = next;
                    }
                    ArgOutcome::Broken(line_end) => {
                        syntax_ok = false;
                        pos = line_end;
                        break;
                    }
                }
            }
            Some(_) => {
                syntax_ok = false;
                pos = buf.get(pos..)?.iter().position(|&b| b == b'\n')? + pos + 1;
                break;
            }
        }
    }
    let parsed = understand(&word, &args, syntax_ok);
    Some((SentCommand { tag, word, parsed }, pos))
}

enum ArgOutcome {
    Arg(Arg, usize),
    /// Unreadable argument; the command ends at this offset (after its line's LF).
    Broken(usize),
}

fn line_end_from(buf: &[u8], pos: usize) -> Option<usize> {
    Some(buf.get(pos..)?.iter().position(|&b| b == b'\n')? + pos + 1)
}

fn arg(buf: &[u8], pos: usize) -> Option<ArgOutcome> {
    match buf.get(pos)? {
        b'"' => {
            let mut i = pos + 1;
            let mut v = Vec::new();
            loop {
                match buf.get(i)? {
                    b'"' => return Some(ArgOutcome::Arg(Arg::Str(v), i + 1)),
                    b'\\' => {
                        v.push(*buf.get(i + 1)?);
                        i += 2;
                    }
                    b'\r' | b'\n' => return Some(ArgOutcome::Broken(line_end_from(buf, i)?)),
                    &b => {
                        v.push(b);
                        i += 1;
                    }
                }
            }
        }
        b'{' => {
            let close = buf.get(pos..)?.iter().position(|&b| b == b'}')? + pos;
            let inner = buf.get(pos + 1..close)?;
            let (digits, sync) = match inner.strip_suffix(b"+") {
                Some(d) => (d, false),
                None => (inner, true),
            };
            let n: Option<u64> = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok());
            let after = close + 1;
            let data_start = if buf.get(after..after + 2)? == b"\r\n" {
                after + 2
            } else if buf.get(after)? == &b'\n' {
                after + 1
            } else {
                return Some(ArgOutcome::Broken(line_end_from(buf, after)?));
            };
            let Some(n) = n.filter(|&n| !(digits.is_empty() || sync && n > MAX_SYNC_LITERAL))
            else {
                return Some(ArgOutcome::Broken(data_start));
            };
            let end = data_start.checked_add(usize::try_from(n).ok()?)?;
            let data = buf.get(data_start..end)?.to_vec();
            Some(ArgOutcome::Arg(Arg::Str(data), end))
        }
        _ => {
            let end = buf
                .get(pos..)?
                .iter()
                .position(|&b| matches!(b, b' ' | b'\r' | b'\n'))?
                + pos;
            let a = buf.get(pos..end)?.to_vec();
            if a.is_empty() {
                return Some(ArgOutcome::Broken(line_end_from(buf, pos)?));
            }
            Some(ArgOutcome::Arg(Arg::Atom, end))
        }
    }
}

fn understand(word: &[u8], args: &[Arg], syntax_ok: bool) -> Parsed {
    let Some(kind) = CommandKind::from_word(word) else {
        return Parsed::Unknown;
    };
    if !syntax_ok {
        return Parsed::Syntax(kind);
    }
    let strings: Option<Vec<Vec<u8>>> = args
        .iter()
        .map(|a| match a {
            Arg::Str(s) => Some(s.clone()),
            Arg::Atom => None,
        })
        .collect();
    use CommandKind as K;
    let db = |c: Command| Parsed::Db(c);
    match (kind, strings.as_deref()) {
        (K::Activate, Some([name, location, acl])) => db(Command::Activate {
            name: name.clone(),
            location: location.clone(),
            acl: acl.clone(),
        }),
        (K::Reserve, Some([name, location])) => db(Command::Reserve {
            name: name.clone(),
            location: location.clone(),
        }),
        (K::Deactivate, Some([name, location])) => db(Command::Deactivate {
            name: name.clone(),
            location: location.clone(),
        }),
        (K::Delete, Some([name])) => db(Command::Delete { name: name.clone() }),
        (K::Find, Some([name])) => db(Command::Find { name: name.clone() }),
        (K::List, Some([])) => db(Command::List { prefix: None }),
        (K::List, Some([prefix])) => db(Command::List {
            prefix: Some(prefix.clone()),
        }),
        (K::Noop | K::Logout | K::Starttls | K::Update, _) if args.is_empty() => {
            Parsed::Session(kind)
        }
        (K::Update, Some(_)) => Parsed::PartialUpdate,
        // The mechanism may be an atom (RFC 3656 section 5) or a string (4.2 prose).
        (K::Authenticate, _) if (1..=2).contains(&args.len()) => Parsed::Session(kind),
        _ => Parsed::Syntax(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8]) -> Vec<SentCommand> {
        let mut r = CommandReader::default();
        r.push(input);
        std::iter::from_fn(|| r.next_command()).collect()
    }

    #[test]
    fn quoted_and_literal_arguments() {
        let cmds = read(b"A1 ACTIVATE {3+}\r\nx.y \"h!p\" {3}\r\na\tb\r\nF1 find \"q\\\"\"\r\n");
        assert_eq!(cmds.len(), 2);
        assert_eq!(
            cmds[0].parsed,
            Parsed::Db(Command::Activate {
                name: b"x.y".to_vec(),
                location: b"h!p".to_vec(),
                acl: b"a\tb".to_vec()
            })
        );
        assert_eq!(cmds[1].tag, b"F1");
        assert_eq!(
            cmds[1].parsed,
            Parsed::Db(Command::Find {
                name: b"q\"".to_vec()
            })
        );
    }

    #[test]
    fn split_writes_reassemble() {
        let mut r = CommandReader::default();
        r.push(b"F1 FIND {3}\r\n");
        assert_eq!(r.next_command(), None);
        r.push(b"abc");
        assert_eq!(r.next_command(), None);
        r.push(b"\r\n");
        assert_eq!(
            r.next_command().map(|c| c.parsed),
            Some(Parsed::Db(Command::Find {
                name: b"abc".to_vec()
            }))
        );
    }

    #[test]
    fn syntax_errors() {
        let cmds = read(
            b"X FIND user.foo\r\nX FIND\r\nX NOOP extra\r\nX RESERVE \"a\"\r\n\r\nX FIND {99999999}\r\nY NOOP\r\n",
        );
        let p: Vec<Parsed> = cmds.into_iter().map(|c| c.parsed).collect();
        assert_eq!(
            p,
            vec![
                Parsed::Syntax(CommandKind::Find),
                Parsed::Syntax(CommandKind::Find),
                Parsed::Syntax(CommandKind::Noop),
                Parsed::Syntax(CommandKind::Reserve),
                Parsed::Unknown,
                Parsed::Syntax(CommandKind::Find),
                Parsed::Session(CommandKind::Noop),
            ]
        );
    }

    #[test]
    fn authenticate_accepts_atom_mechanism() {
        let cmds = read(b"A AUTHENTICATE PLAIN \"AGEAYg==\"\r\nB UPDATE \"h1\"\r\n");
        assert_eq!(cmds[0].parsed, Parsed::Session(CommandKind::Authenticate));
        assert_eq!(cmds[1].parsed, Parsed::PartialUpdate);
    }
}
