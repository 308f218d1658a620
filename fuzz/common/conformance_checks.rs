// Checks of the conformance runner's own parsers, shared by the fuzz targets `scenario_parser`
// and `wire_tokenizer` and by `conformance/tests/fuzz_regressions.rs` (through `include!`).
// Items only; uses the `conformance` crate and nothing else.

include!("input.rs");

/// Largest template expansion the check performs (a scenario may ask for more, e.g.
/// `${repeat:200000:a}`; the cap only keeps one fuzz input fast).
pub const MAX_EXPANSION: usize = 1 << 20;

/// Values for every fixed placeholder name.
pub fn fuzz_env() -> conformance::scenario::template::Env {
    let mut env = conformance::scenario::template::Env::default();
    for name in [
        "tag", "run", "user", "pass", "user2", "pass2", "plain", "plain2",
    ] {
        env.set(name, name.as_bytes().to_vec());
    }
    for i in 1..=9 {
        let suffix = if i == 1 { String::new() } else { i.to_string() };
        env.set(&format!("box{suffix}"), format!("ctfz{i}").into_bytes());
        env.set(&format!("host{suffix}"), format!("hfz{i}").into_bytes());
    }
    env
}

/// The whole `scenario_parser` check: the scenario parser and validator, and every line as a
/// template (each mode, expanded when small enough) and as a pattern matched against the
/// tokens of the next line.
pub fn check_scenario_parser(data: &[u8]) {
    use conformance::scenario::{parse_scenario, pattern, template, validate};
    let text = String::from_utf8_lossy(data);
    if let Ok(sc) = parse_scenario("fuzz.scn", &text) {
        let _ = validate::validate(&sc, None);
    }
    let env = fuzz_env();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        for mode in [
            template::Mode::Send,
            template::Mode::Quoted,
            template::Mode::Regex,
        ] {
            if let Ok(t) = template::parse(line, mode)
                && t.size_bound(32) <= MAX_EXPANSION
            {
                let _ = t.expand(&env);
            }
        }
        if let Ok(p) = pattern::parse(line) {
            let next = lines.get(i + 1).copied().unwrap_or_default().as_bytes();
            let tokens = conformance::wire::token::tokenize(next);
            let _ = pattern::match_line(&p, next, &tokens, &env);
        }
    }
}

/// Check the spans of tokens: inside the line, in order, nested ones inside their parent.
pub fn check_spans(tokens: &[conformance::wire::token::Spanned], lo: usize, hi: usize) {
    use conformance::wire::token::Token;
    let mut prev = lo;
    for t in tokens {
        assert!(
            prev <= t.start && t.start <= t.end && t.end <= hi,
            "span {}..{} outside {prev}..{hi}",
            t.start,
            t.end
        );
        prev = t.end;
        if let Token::List(inner) | Token::Code(inner) = &t.token {
            check_spans(inner, t.start, t.end);
        }
    }
}

/// Frame `pieces` as server output with a fresh runner framer; tokenize each line.
pub fn wire_lines(
    max_literal: usize,
    max_line: usize,
    pieces: &[&[u8]],
) -> Vec<Result<conformance::wire::frame::Line, conformance::wire::frame::FrameError>> {
    use conformance::wire::frame::Framer;
    let mut f = Framer::new(max_literal, max_line);
    let mut out = Vec::new();
    for piece in pieces {
        f.push(piece);
        loop {
            match f.next_line() {
                Ok(Some(line)) => {
                    // frame.rs: the limit is on the logical line, literals included.
                    assert!(
                        line.bytes.len() <= max_line,
                        "a logical line of {} bytes passed max_line {max_line}",
                        line.bytes.len()
                    );
                    let tokens = conformance::wire::token::tokenize(&line.bytes);
                    check_spans(&tokens, 0, line.bytes.len());
                    out.push(Ok(line));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

/// Read `pieces` back as MUPDATE commands sent by the runner.
pub fn sent_commands(pieces: &[&[u8]]) -> Vec<conformance::wire::command::SentCommand> {
    let mut r = conformance::wire::command::CommandReader::default();
    let mut out = Vec::new();
    let mut pushed = 0usize;
    for piece in pieces {
        r.push(piece);
        pushed += piece.len();
        // Each command consumes at least one byte; bound the loop by the input size anyway.
        for _ in 0..=pushed {
            match r.next_command() {
                Some(c) => out.push(c),
                None => break,
            }
        }
    }
    out
}

/// Fuzz finding `regressions/wire_tokenizer/line-over-max-line-*`, now fixed:
/// `conformance::wire::frame::Framer` enforced `max_line` only while a line was incomplete, so a
/// longer line that arrived in one read passed. While true, [`check_wire_tokenizer`] uses a
/// `max_line` no input can reach (kept as a switch for the next such finding).
pub const WIRE_MAX_LINE_UNFIXED: bool = false;

/// The `wire_tokenizer` check the fuzz target and the corpus replay run (see
/// [`WIRE_MAX_LINE_UNFIXED`]).
pub fn check_wire_tokenizer(data: &[u8]) {
    check_wire_tokenizer_with(data, !WIRE_MAX_LINE_UNFIXED);
}

/// The full `wire_tokenizer` check, including the line limit.
pub fn check_wire_tokenizer_strict(data: &[u8]) {
    check_wire_tokenizer_with(data, true);
}

/// The runner's server-line framer and tokenizer, and its reader of sent commands: no panic,
/// token spans in bounds, the line limit respected (when `line_limit`), no dependence on the
/// chunking.
pub fn check_wire_tokenizer_with(data: &[u8], line_limit: bool) {
    let (ctl, stream) = split_control(data);
    let (max_literal, mut max_line) = if ctl & CTL_SMALL != 0 {
        (16, 64)
    } else {
        (64 * 1024, 1024 * 1024)
    };
    if !line_limit {
        max_line = max_line.max(stream.len() + 1);
    }
    let pieces = chunks(ctl, stream);
    let chunked = wire_lines(max_literal, max_line, &pieces);
    let whole = wire_lines(max_literal, max_line, &[stream]);
    assert_eq!(chunked, whole, "server lines depend on the chunking");
    assert_eq!(
        sent_commands(&pieces),
        sent_commands(&[stream]),
        "sent commands depend on the chunking"
    );
}
