//! What a connection writes to the log: commands in readable form, credentials never.

use murder_model::Command;

use super::super::codec::{Event, Token};

/// A command for the log: the command word and its (lossy) arguments, never binary noise.
pub(super) fn describe(command: &Command) -> String {
    let s = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
    match command {
        Command::Activate {
            name,
            location,
            acl,
        } => format!("ACTIVATE {} {} {}", s(name), s(location), s(acl)),
        Command::Reserve { name, location } => format!("RESERVE {} {}", s(name), s(location)),
        Command::Deactivate { name, location } => {
            format!("DEACTIVATE {} {}", s(name), s(location))
        }
        Command::Delete { name } => format!("DELETE {}", s(name)),
        Command::Find { name } => format!("FIND {}", s(name)),
        Command::List { prefix } => match prefix {
            Some(p) => format!("LIST {}", s(p)),
            None => "LIST".to_string(),
        },
    }
}

/// An event for the trace log, with SASL credentials (AUTHENTICATE's initial response)
/// replaced: passwords never reach a log.
pub(super) fn redacted(event: &Event) -> String {
    match event {
        Event::Command(raw) if raw.word.eq_ignore_ascii_case(b"AUTHENTICATE") => format!(
            "{} AUTHENTICATE ({} arguments, redacted)",
            String::from_utf8_lossy(&raw.tag),
            raw.args.len()
        ),
        Event::SaslLine(_) => "SASL response (redacted)".to_string(),
        Event::Command(raw) => {
            let args: Vec<String> = raw
                .args
                .iter()
                .map(|t| match t {
                    Token::Atom(a) => String::from_utf8_lossy(a).into_owned(),
                    Token::String(s) => format!("{:?}", String::from_utf8_lossy(s)),
                })
                .collect();
            format!(
                "{} {} {}",
                String::from_utf8_lossy(&raw.tag),
                String::from_utf8_lossy(&raw.word),
                args.join(" ")
            )
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mupdate::codec::RawCommand;
    use crate::mupdate::codec::Token;

    #[test]
    fn credentials_never_reach_the_trace_log() {
        let secret = b"AGFkbWluAHNlY3JldA==".to_vec();
        let ev = Event::Command(RawCommand {
            tag: b"A".to_vec(),
            word: b"authenticate".to_vec(),
            args: vec![
                Token::String(b"PLAIN".to_vec()),
                Token::String(secret.clone()),
            ],
        });
        let text = redacted(&ev);
        assert!(!text.contains("AGFkbWlu"), "{text}");
        assert!(!redacted(&Event::SaslLine(secret)).contains("AGFkbWlu"));
        let find = Event::Command(RawCommand {
            tag: b"F".to_vec(),
            word: b"FIND".to_vec(),
            args: vec![Token::String(b"user.x".to_vec())],
        });
        assert!(redacted(&find).contains("FIND"));
    }
}
