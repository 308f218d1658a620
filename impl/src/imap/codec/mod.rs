//! The sans-IO IMAP codec: framing ([`framer`]), a strict argument cursor ([`parser`]), typed
//! commands ([`command`]), dates ([`datetime`]) and response quoting ([`response`]).

pub mod command;
pub mod datetime;
pub mod framer;
pub mod parser;
pub mod response;

#[cfg(test)]
mod never_panics {
    //! Random input through framing and parsing: errors are fine, panics are not.
    use bytes::{Bytes, BytesMut};
    use proptest::prelude::*;

    use super::command::{parse_append_message, parse_command, parse_tag_and_name};
    use super::framer::{Frame, Framer};
    use super::parser::{Cursor, Piece};

    fn words() -> impl Strategy<Value = Vec<u8>> {
        let atoms = prop::sample::select(vec![
            "a ",
            "FETCH ",
            "UID ",
            "STORE ",
            "SEARCH ",
            "APPEND ",
            "LOGIN ",
            "1:*",
            "(",
            ")",
            "\"",
            "\\",
            "{3}\r\n",
            "{0+}\r\n",
            "BODY[",
            "]",
            "<1.2>",
            "HEADER.FIELDS ",
            " ",
            "\r\n",
            "*",
            "%",
            "NOT ",
            "OR ",
            "FLAGS",
            "+FLAGS.SILENT ",
            "\\Seen",
        ]);
        prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat().into_bytes())
    }

    proptest! {
        #[test]
        fn framing_and_parsing_never_panic(
            input in prop_oneof![words(), prop::collection::vec(any::<u8>(), 0..300)],
            accept in any::<bool>(),
        ) {
            let mut framer = Framer::new(256);
            let mut buf = BytesMut::from(&input[..]);
            let mut pieces = Vec::new();
            for _ in 0..1000 {
                match framer.next_frame(&mut buf) {
                    Ok(Some(Frame::Line { text, literal })) => {
                        if accept { framer.accept_literal() } else { framer.reject_literal() }
                        let _ = parse_append_message(&text);
                        pieces.push(Piece::Text(text));
                        if literal.is_none() {
                            let mut c = Cursor::new(&pieces);
                            if let Ok((_, name)) = parse_tag_and_name(&mut c) {
                                let _ = parse_command(&name, &mut c);
                            }
                            pieces.clear();
                        }
                    }
                    Ok(Some(Frame::LiteralData(d))) => pieces.push(Piece::Literal(d)),
                    Ok(Some(Frame::LiteralEnd)) => pieces.push(Piece::Literal(Bytes::new())),
                    Ok(None) => break,
                    Err(e) if e.recoverable() => {}
                    Err(_) => break,
                }
            }
        }
    }
}
