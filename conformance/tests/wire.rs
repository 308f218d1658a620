//! Properties of the runner's own wire reading: nothing panics on arbitrary input, a string has
//! the same value whether quoted or sent as a literal, and framing does not depend on how the
//! bytes were split into reads. Plus a snapshot of a parsed scenario.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use conformance::scenario::{parse_scenario, pattern, template};
use conformance::wire::command::CommandReader;
use conformance::wire::frame::Framer;
use conformance::wire::token::tokenize;
use proptest::prelude::*;

fn quote(v: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &b in v {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

proptest! {
    #[test]
    fn tokenizer_and_framer_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = tokenize(&bytes);
        let mut f = Framer::new(1000, 10_000);
        f.push(&bytes);
        while let Ok(Some(_)) = f.next_line() {}
        let mut r = CommandReader::default();
        r.push(&bytes);
        for _ in 0..1000 {
            if r.next_command().is_none() {
                break;
            }
        }
    }

    #[test]
    fn pattern_template_and_scenario_parsers_never_panic(text in "\\PC{0,120}") {
        let _ = pattern::parse(&text);
        let _ = template::parse(&text, template::Mode::Send);
        let _ = template::parse(&text, template::Mode::Regex);
        let _ = parse_scenario("p.scn", &text);
        let _ = parse_scenario("p.scn", &format!("id: mupdate/p\ntitle: t\nprotocol: mupdate\nrfc: RFC3656 4\nlevel: MUST\nopen c\nc {text}\n"));
    }

    #[test]
    fn quoted_and_literal_strings_have_the_same_value(v in proptest::collection::vec(any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'), 0..60), plus in any::<bool>()) {
        let mut quoted = b"T MAILBOX ".to_vec();
        quoted.extend(quote(&v));
        let mut lit = format!("T MAILBOX {{{}{}}}\r\n", v.len(), if plus { "+" } else { "" }).into_bytes();
        lit.extend(&v);
        let q = tokenize(&quoted);
        let l = tokenize(&lit);
        prop_assert_eq!(q[2].token.string_value(), Some(v.as_slice()));
        prop_assert_eq!(l[2].token.string_value(), Some(v.as_slice()));
        let pat = pattern::parse(&format!("T MAILBOX \"{}\"", String::from_utf8_lossy(&v).replace('\\', "\\\\").replace('"', "\\\"").replace('$', "$$"))).unwrap();
        let env = template::Env::default();
        if std::str::from_utf8(&v).is_ok() {
            prop_assert!(pattern::match_line(&pat, &quoted, &q, &env).is_ok());
            prop_assert!(pattern::match_line(&pat, &lit, &l, &env).is_ok());
        }
    }

    #[test]
    fn framing_is_independent_of_read_boundaries(cut in 0usize..60) {
        let stream = b"* OK hi\r\nF1 MAILBOX {5+}\r\na\r\nbc \"h\" {0}\r\n\r\nF1 OK \"done\"\r\n";
        let cut = cut.min(stream.len());
        let mut f = Framer::default();
        let mut lines = Vec::new();
        f.push(&stream[..cut]);
        while let Some(l) = f.next_line().unwrap() { lines.push(l.bytes); }
        f.push(&stream[cut..]);
        while let Some(l) = f.next_line().unwrap() { lines.push(l.bytes); }
        prop_assert_eq!(lines.len(), 3);
        prop_assert_eq!(&lines[1], &b"F1 MAILBOX {5+}\r\na\r\nbc \"h\" {0}\r\n".to_vec());
    }
}

#[test]
fn parsed_race_scenario_snapshot() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/mupdate/reserve-race.scn");
    let text = std::fs::read_to_string(path).unwrap();
    let sc = parse_scenario("mupdate/reserve-race.scn", &text).unwrap();
    let steps: Vec<String> = sc
        .steps()
        .map(|s| {
            format!("{:>3} {:?}", s.line, s.kind)
                .chars()
                .take(160)
                .collect()
        })
        .collect();
    insta::assert_snapshot!(format!("{:#?}\n{}", sc.meta, steps.join("\n")));
}
