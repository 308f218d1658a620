//! The `.scn` parser. Every error names the file, line and column.

use std::collections::HashSet;
use std::fmt;

use super::pattern::{self, Pattern};
use super::template::{self, Mode, Template, TemplateError};
use super::{Level, Meta, Need, OpenMode, Protocol, Scenario, Step, StepKind};

/// A syntax error in a scenario file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// File path as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (bytes).
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Header,
    Setup,
    Test,
    Cleanup,
}

enum Open {
    None,
    Unordered {
        conn: String,
        line: usize,
        patterns: Vec<Pattern>,
    },
    Race {
        line: usize,
        sends: Vec<(String, Template, usize)>,
    },
}

const KEYWORDS: &[&str] = &[
    "open", "login", "starttls", "tls", "close", "race", "end", "same", "count", "has", "lacks",
    "last",
];

/// The suffix of `<` and `<<` that also accepts the server closing the connection.
const OR_CLOSED: &str = " or closed";

struct Parser<'a> {
    file: &'a str,
    line_no: usize,
    captures: HashSet<String>,
    sets: HashSet<String>,
}

impl Parser<'_> {
    fn err(&self, col: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line: self.line_no,
            col,
            message: message.into(),
        }
    }

    fn template(&self, text: &str, col: usize, mode: Mode) -> Result<Template, ParseError> {
        let t = template::parse(text, mode).map_err(|e| self.terr(e, col))?;
        self.check_vars(&t, col)?;
        Ok(t)
    }

    fn terr(&self, e: TemplateError, col: usize) -> ParseError {
        self.err(col + e.offset, e.message)
    }

    fn check_vars(&self, t: &Template, col: usize) -> Result<(), ParseError> {
        for v in t.vars() {
            if !template::is_fixed_name(v) && !self.captures.contains(v) {
                return Err(self.err(
                    col,
                    format!("${{{v}}} is used before any ${{{v}=}} captures it"),
                ));
            }
        }
        Ok(())
    }

    fn pattern(&mut self, text: &str, col: usize) -> Result<Pattern, ParseError> {
        let p = pattern::parse(text).map_err(|e| self.terr(e, col))?;
        // Captures in this pattern become usable after it (and later in the same line).
        let mut mine = Vec::new();
        collect_captures(&p.items, &mut mine);
        let before = self.captures.clone();
        self.captures.extend(mine);
        let r = check_pattern_vars(&p.items, &self.captures);
        if let Err(v) = r {
            self.captures = before;
            return Err(self.err(
                col,
                format!("${{{v}}} is used before any ${{{v}=}} captures it"),
            ));
        }
        Ok(p)
    }
}

fn collect_captures(items: &[pattern::Pat], out: &mut Vec<String>) {
    use pattern::PatKind as K;
    for p in items {
        match &p.kind {
            K::Capture(n) => out.push(n.clone()),
            K::Alt(v) | K::List(v) | K::Code(v) => collect_captures(v, out),
            _ => {}
        }
    }
}

fn check_pattern_vars(items: &[pattern::Pat], known: &HashSet<String>) -> Result<(), String> {
    use pattern::PatKind as K;
    for p in items {
        match &p.kind {
            K::Str(t) | K::Value(t) => {
                for v in t.vars() {
                    if !template::is_fixed_name(v) && !known.contains(v) {
                        return Err(v.to_string());
                    }
                }
            }
            K::Alt(v) | K::List(v) | K::Code(v) => check_pattern_vars(v, known)?,
            _ => {}
        }
    }
    Ok(())
}

fn push_step(steps: &mut [Vec<Step>; 3], slot: usize, step: Step) {
    if let Some(v) = steps.get_mut(slot) {
        v.push(step);
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Parse a scenario file's text. `file` is only used in error messages and kept in the result.
pub fn parse_scenario(file: &str, text: &str) -> Result<Scenario, ParseError> {
    let mut p = Parser {
        file,
        line_no: 0,
        captures: HashSet::new(),
        sets: HashSet::new(),
    };
    let mut block = Block::Header;
    let mut fields: Vec<(String, String, usize)> = Vec::new();
    let mut steps: [Vec<Step>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut open = Open::None;
    let mut opened: HashSet<String> = HashSet::new();
    let mut seen_blocks: HashSet<&'static str> = HashSet::new();

    for (idx, raw) in text.lines().enumerate() {
        p.line_no = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let indent = line.len() - line.trim_start().len();
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let col0 = indent + 1;
        if body.starts_with('[') {
            if !matches!(open, Open::None) {
                return Err(p.err(
                    col0,
                    "block header inside an unfinished race/unordered (missing `end`)",
                ));
            }
            let (b, name) = match body.trim_end() {
                "[setup]" => (Block::Setup, "setup"),
                "[test]" => (Block::Test, "test"),
                "[cleanup]" => (Block::Cleanup, "cleanup"),
                other => {
                    return Err(p.err(
                        col0,
                        format!("unknown block {other}: use [setup], [test] or [cleanup]"),
                    ));
                }
            };
            if !seen_blocks.insert(name) {
                return Err(p.err(col0, format!("second [{name}] block")));
            }
            if block != Block::Header && (b as u8) < (block as u8) {
                return Err(p.err(
                    col0,
                    "blocks must come in the order [setup], [test], [cleanup]",
                ));
            }
            if b == Block::Cleanup {
                // Cleanup opens its own connections; test connections stay usable.
            }
            block = b;
            continue;
        }
        if block == Block::Header {
            if let Some((k, v)) = body.split_once(':')
                && is_name(k.trim())
                && !k.contains(' ')
            {
                fields.push((
                    k.trim().to_ascii_lowercase(),
                    v.trim().to_string(),
                    p.line_no,
                ));
                continue;
            }
            // The first step line ends the header: it belongs to [test].
            block = Block::Test;
            seen_blocks.insert("test");
        }
        let slot = match block {
            Block::Setup => 0,
            Block::Cleanup => 2,
            _ => 1,
        };

        // Inside a block construct.
        match &mut open {
            Open::Unordered { patterns, .. } => {
                if body.trim_end() == "end" {
                    if let Open::Unordered {
                        conn,
                        line,
                        patterns,
                    } = std::mem::replace(&mut open, Open::None)
                    {
                        if patterns.is_empty() {
                            return Err(p.err(col0, "empty unordered block"));
                        }
                        push_step(
                            &mut steps,
                            slot,
                            Step {
                                line,
                                kind: StepKind::Unordered { conn, patterns },
                            },
                        );
                    }
                    continue;
                }
                let pat = p.pattern(body, col0)?;
                patterns.push(pat);
                continue;
            }
            Open::Race { sends, .. } => {
                if body.trim_end() == "end" {
                    if let Open::Race { line, sends } = std::mem::replace(&mut open, Open::None) {
                        if sends.len() < 2 {
                            return Err(p.err(col0, "a race needs at least two commands"));
                        }
                        push_step(
                            &mut steps,
                            slot,
                            Step {
                                line,
                                kind: StepKind::Race { sends },
                            },
                        );
                    }
                    continue;
                }
                let (conn, rest) = body.split_once(' ').unwrap_or((body, ""));
                let Some(text) = rest.strip_prefix("> ") else {
                    return Err(p.err(
                        col0 + conn.len() + 1,
                        "inside race only `CONN > COMMAND` lines are allowed",
                    ));
                };
                if !opened.contains(conn) {
                    return Err(p.err(col0, format!("connection {conn} is not opened")));
                }
                if sends.iter().any(|(c, _, _)| c == conn) {
                    return Err(p.err(col0, format!("{conn} appears twice in one race")));
                }
                let t = p.template(text, col0 + conn.len() + 3, Mode::Send)?;
                let line_no = p.line_no;
                sends.push((conn.to_string(), t, line_no));
                continue;
            }
            Open::None => {}
        }

        let (first, rest) = match body.split_once(' ') {
            Some((f, r)) => (f, r),
            None => (body.trim_end(), ""),
        };
        let rest_col = col0 + first.len() + 1;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let kind = if KEYWORDS.contains(&first) {
            match first {
                "open" => {
                    let conn = words.first().copied().unwrap_or_default();
                    if !is_name(conn) || KEYWORDS.contains(&conn) {
                        return Err(p.err(rest_col, "open needs a connection name"));
                    }
                    let mut extra = words.get(1..).unwrap_or_default();
                    let master = extra.first() == Some(&"master");
                    if master {
                        extra = extra.get(1..).unwrap_or_default();
                    }
                    let mode = match extra {
                        [] => OpenMode::Login,
                        ["user2"] => OpenMode::LoginUser2,
                        ["noauth"] => OpenMode::NoAuth,
                        ["raw"] => OpenMode::Raw,
                        _ => {
                            return Err(p.err(rest_col, "open CONN [master] [user2|noauth|raw]"));
                        }
                    };
                    opened.insert(conn.to_string());
                    StepKind::Open {
                        conn: conn.to_string(),
                        mode,
                        master,
                    }
                }
                "login" | "starttls" | "tls" | "close" => {
                    let conn = words.first().copied().unwrap_or_default().to_string();
                    if !opened.contains(&conn) {
                        return Err(p.err(rest_col, format!("connection {conn:?} is not opened")));
                    }
                    let extra = words.get(1..).unwrap_or_default();
                    match (first, extra) {
                        ("login", []) => StepKind::Login { conn, user2: false },
                        ("login", ["user2"]) => StepKind::Login { conn, user2: true },
                        ("starttls", []) => StepKind::StartTls { conn },
                        ("tls", []) => StepKind::Tls { conn },
                        ("close", []) => StepKind::Close { conn },
                        _ => {
                            return Err(p.err(rest_col, format!("unexpected arguments to {first}")));
                        }
                    }
                }
                "race" => {
                    if !rest.trim().is_empty() {
                        return Err(p.err(rest_col, "race takes no arguments"));
                    }
                    open = Open::Race {
                        line: p.line_no,
                        sends: Vec::new(),
                    };
                    continue;
                }
                "end" => return Err(p.err(col0, "`end` without race/unordered")),
                "same" => match words.as_slice() {
                    [a, b] => {
                        for s in [a, b] {
                            if !p.sets.contains(*s) {
                                return Err(
                                    p.err(rest_col, format!("no set named {s} was collected"))
                                );
                            }
                        }
                        StepKind::Same {
                            a: a.to_string(),
                            b: b.to_string(),
                        }
                    }
                    _ => return Err(p.err(rest_col, "same SET1 SET2")),
                },
                "lacks" | "last" => {
                    let (name, pat) = rest.split_once(' ').unwrap_or((rest, ""));
                    let usage = format!(
                        "{first} {} PATTERN",
                        if first == "lacks" { "CONN" } else { "SET|CONN" }
                    );
                    if pat.trim().is_empty() {
                        return Err(p.err(rest_col, usage));
                    }
                    let (is_set, is_conn) = (p.sets.contains(name), opened.contains(name));
                    let conn = match (first, is_set, is_conn) {
                        ("lacks", _, true) | ("last", false, true) => true,
                        ("last", true, false) => false,
                        ("last", true, true) => {
                            return Err(p.err(
                                rest_col,
                                format!("{name} is both a set and a connection: rename one"),
                            ));
                        }
                        _ => {
                            return Err(p.err(
                                rest_col,
                                format!(
                                    "{usage}: {name} is not an opened connection{}",
                                    if first == "last" {
                                        " or a collected set"
                                    } else {
                                        ""
                                    }
                                ),
                            ));
                        }
                    };
                    let pat_col = rest_col + name.len() + 1;
                    let pattern = p.pattern(pat, pat_col)?;
                    if first == "lacks" {
                        let mut caps = Vec::new();
                        collect_captures(&pattern.items, &mut caps);
                        if let Some(c) = caps.first() {
                            return Err(p.err(
                                pat_col,
                                format!("lacks cannot capture (${{{c}=}}): no line matches it"),
                            ));
                        }
                        StepKind::Lacks {
                            conn: name.to_string(),
                            pattern,
                        }
                    } else {
                        StepKind::Last {
                            name: name.to_string(),
                            conn,
                            pattern,
                        }
                    }
                }
                "count" => match words.as_slice() {
                    [name, n] => {
                        if !p.sets.contains(*name) {
                            return Err(
                                p.err(rest_col, format!("no set named {name} was collected"))
                            );
                        }
                        let n = n.parse().map_err(|_| {
                            p.err(rest_col + name.len() + 1, "count SET N: N must be a number")
                        })?;
                        StepKind::Count {
                            name: name.to_string(),
                            n,
                        }
                    }
                    _ => return Err(p.err(rest_col, "count SET N")),
                },
                _ => {
                    // has NAME PATTERN
                    let (name, pat) = rest.split_once(' ').unwrap_or((rest, ""));
                    if !p.sets.contains(name) {
                        return Err(p.err(rest_col, format!("no set named {name} was collected")));
                    }
                    if pat.trim().is_empty() {
                        return Err(p.err(rest_col, "has SET PATTERN"));
                    }
                    let pattern = p.pattern(pat, rest_col + name.len() + 1)?;
                    StepKind::Has {
                        name: name.to_string(),
                        pattern,
                    }
                }
            }
        } else {
            let conn = first.to_string();
            if !is_name(&conn) {
                return Err(p.err(col0, format!("expected a step, got {first:?}")));
            }
            if !opened.contains(&conn) {
                return Err(p.err(
                    col0,
                    format!("connection {conn} is not opened (add `open {conn}` before)"),
                ));
            }
            let (op, arg) = match rest.split_once(' ') {
                Some((o, a)) => (o, a),
                None => (rest.trim_end(), ""),
            };
            let arg_col = rest_col + op.len() + 1;
            let need_arg = |p: &Parser<'_>| {
                if arg.trim().is_empty() {
                    Err(p.err(arg_col, format!("`{op}` needs an argument")))
                } else {
                    Ok(())
                }
            };
            match op {
                ">" => StepKind::Send {
                    conn,
                    text: p.template(arg, arg_col, Mode::Send)?,
                    crlf: true,
                },
                ">>" => {
                    need_arg(&p)?;
                    StepKind::Send {
                        conn,
                        text: p.template(arg, arg_col, Mode::Send)?,
                        crlf: false,
                    }
                }
                ">!" => {
                    need_arg(&p)?;
                    StepKind::SendJudged {
                        conn,
                        text: p.template(arg, arg_col, Mode::Send)?,
                    }
                }
                "<" | "<<" => {
                    let (arg, or_closed) = match arg.trim_end().strip_suffix(OR_CLOSED) {
                        Some(a) => (a, true),
                        None if arg.trim() == OR_CLOSED.trim() => ("", true),
                        None => (arg, false),
                    };
                    if arg.trim().is_empty() {
                        return Err(p.err(arg_col, format!("`{op}` needs an argument")));
                    }
                    let pattern = p.pattern(arg, arg_col)?;
                    if op == "<" {
                        StepKind::Expect {
                            conn,
                            pattern,
                            or_closed,
                        }
                    } else {
                        StepKind::Eventually {
                            conn,
                            pattern,
                            or_closed,
                        }
                    }
                }
                "<=" => StepKind::ExpectExact {
                    conn,
                    text: p.template(arg, arg_col, Mode::Send)?,
                },
                "<~" => {
                    need_arg(&p)?;
                    let t = p.template(arg, arg_col, Mode::Regex)?;
                    if t.size_bound(2) > template::MAX_REGEX_LEN {
                        return Err(p.err(
                            arg_col,
                            format!("regex longer than {} bytes", template::MAX_REGEX_LEN),
                        ));
                    }
                    // Check the regex compiles with placeholder values substituted.
                    let mut env = template::Env::default();
                    for v in t.vars() {
                        env.set(v, "x");
                    }
                    let src = t.expand(&env).map_err(|e| p.err(arg_col, e))?;
                    template::compile_regex(&String::from_utf8_lossy(&src))
                        .map_err(|e| p.err(arg_col, e))?;
                    StepKind::ExpectRegex { conn, regex: t }
                }
                "closed" | "silent" | "settle" | "unordered" if !arg.trim().is_empty() => {
                    return Err(p.err(arg_col, format!("`{op}` takes no argument")));
                }
                "closed" => StepKind::Closed { conn },
                "silent" => StepKind::Silent { conn },
                "settle" => StepKind::Settle { conn },
                "unordered" => {
                    open = Open::Unordered {
                        conn,
                        line: p.line_no,
                        patterns: Vec::new(),
                    };
                    continue;
                }
                "collect" => {
                    let (name, after) = arg.split_once(' ').unwrap_or((arg, ""));
                    if !is_name(name) {
                        return Err(p.err(arg_col, "collect NAME [mine] until PATTERN"));
                    }
                    let (mine, after) = match after.strip_prefix("mine ") {
                        Some(a) => (true, a),
                        None => (false, after),
                    };
                    let Some(until) = after.strip_prefix("until ") else {
                        return Err(p.err(
                            arg_col + name.len() + 1,
                            "collect NAME [mine] until PATTERN",
                        ));
                    };
                    let pat_col = arg_col + (arg.len() - until.len());
                    let until = p.pattern(until, pat_col)?;
                    p.sets.insert(name.to_string());
                    StepKind::Collect {
                        conn,
                        name: name.to_string(),
                        mine,
                        until,
                    }
                }
                other => {
                    return Err(p.err(
                        rest_col,
                        format!("unknown operator {other:?}: use > >> >! < << <= <~ closed silent settle unordered collect"),
                    ));
                }
            }
        };
        push_step(
            &mut steps,
            slot,
            Step {
                line: p.line_no,
                kind,
            },
        );
    }
    p.line_no = text.lines().count().max(1);
    if !matches!(open, Open::None) {
        return Err(p.err(
            1,
            "unfinished race/unordered block at end of file (missing `end`)",
        ));
    }
    let meta = meta(&p, &fields)?;
    let [setup, test, cleanup] = steps;
    if test.is_empty() {
        return Err(p.err(1, "no [test] steps"));
    }
    let sc = Scenario {
        meta,
        setup,
        test,
        cleanup,
        path: file.to_string(),
        source: text.to_string(),
    };
    check_protocol_rules(&sc).map_err(|(line, message)| ParseError {
        file: file.to_string(),
        line,
        col: 1,
        message,
    })?;
    Ok(sc)
}

fn check_protocol_rules(sc: &Scenario) -> Result<(), (usize, String)> {
    for s in sc.steps() {
        if matches!(s.kind, StepKind::Open { master: true, .. })
            && !sc.meta.needs.contains(&Need::MasterPeer)
        {
            return Err((
                s.line,
                "`open NAME master` needs `needs: slave master` in the header".into(),
            ));
        }
    }
    if sc.meta.protocol == Protocol::Mupdate {
        return Ok(());
    }
    if sc.meta.needs.contains(&Need::MasterPeer) {
        return Err((1, "`needs: slave master` is MUPDATE only".into()));
    }
    for s in sc.setup.iter().chain(&sc.test).chain(&sc.cleanup) {
        match s.kind {
            StepKind::Race { .. } => return Err((s.line, "race is MUPDATE only".into())),
            StepKind::SendJudged { .. } => return Err((s.line, ">! is MUPDATE only".into())),
            _ => {}
        }
    }
    Ok(())
}

fn meta(p: &Parser<'_>, fields: &[(String, String, usize)]) -> Result<Meta, ParseError> {
    let at = |line: usize, msg: String| ParseError {
        file: p.file.to_string(),
        line,
        col: 1,
        message: msg,
    };
    let mut id = None;
    let mut title = None;
    let mut protocol = None;
    let mut rfc = None;
    let mut level = None;
    let mut needs = Vec::new();
    let mut timeout = None;
    let mut note = None;
    for (k, v, line) in fields {
        let line = *line;
        let dup = |seen: bool| {
            if seen {
                Err(at(line, format!("duplicate key {k}")))
            } else {
                Ok(())
            }
        };
        match k.as_str() {
            "id" => {
                dup(id.is_some())?;
                if v.is_empty() || v.contains(char::is_whitespace) {
                    return Err(at(line, "id must be one word".into()));
                }
                id = Some(v.clone());
            }
            "title" => {
                dup(title.is_some())?;
                title = Some(v.clone());
            }
            "protocol" => {
                dup(protocol.is_some())?;
                protocol = Some(match v.to_ascii_lowercase().as_str() {
                    "mupdate" => Protocol::Mupdate,
                    "imap" => Protocol::Imap,
                    _ => {
                        return Err(at(
                            line,
                            format!("protocol must be mupdate or imap, not {v:?}"),
                        ));
                    }
                });
            }
            "rfc" => {
                dup(rfc.is_some())?;
                let list: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                for r in &list {
                    let ok = r.split_once(' ').is_some_and(|(a, b)| {
                        a.starts_with("RFC") && a.len() > 3 && !b.trim().is_empty()
                    });
                    if !ok {
                        return Err(at(
                            line,
                            format!("rfc entries look like `RFC3656 4.9`, not {r:?}"),
                        ));
                    }
                }
                if list.is_empty() {
                    return Err(at(line, "rfc is empty".into()));
                }
                rfc = Some(list);
            }
            "level" => {
                dup(level.is_some())?;
                level = Some(match v.to_ascii_uppercase().as_str() {
                    "MUST" => Level::Must,
                    "SHOULD" => Level::Should,
                    "MAY" => Level::May,
                    "ROBUSTNESS" => Level::Robustness,
                    _ => {
                        return Err(at(
                            line,
                            format!("level must be MUST, SHOULD, MAY or ROBUSTNESS, not {v:?}"),
                        ));
                    }
                });
            }
            "needs" => {
                for w in v.split_whitespace() {
                    let lower = w.to_ascii_lowercase();
                    needs.push(match lower.as_str() {
                        "master" => Need::Master,
                        "slave" => Need::Slave,
                        "admin" => Need::Admin,
                        "user2" => Need::User2,
                        "starttls" => Need::Starttls,
                        "nostarttls" => Need::NoStarttls,
                        "plaintext" => Need::Plaintext,
                        _ => {
                            if let Some(c) = w.strip_prefix("cap:").filter(|c| !c.is_empty()) {
                                Need::Capability(c.to_ascii_uppercase())
                            } else if let Some(c) =
                                w.strip_prefix("nocap:").filter(|c| !c.is_empty())
                            {
                                Need::NoCapability(c.to_ascii_uppercase())
                            } else if let Some(m) =
                                w.strip_prefix("mech:").filter(|c| !c.is_empty())
                            {
                                Need::Mechanism(m.to_ascii_uppercase())
                            } else if let Some(m) =
                                w.strip_prefix("login:").filter(|c| !c.is_empty())
                            {
                                Need::Login(m.to_ascii_uppercase())
                            } else {
                                return Err(at(line, format!("unknown need {w:?}")));
                            }
                        }
                    });
                }
            }
            "timeout" => {
                dup(timeout.is_some())?;
                timeout = Some(
                    v.trim_end_matches('s')
                        .parse::<u64>()
                        .ok()
                        .filter(|&t| t > 0 && t <= 600)
                        .ok_or_else(|| {
                            at(line, format!("timeout must be 1..600 seconds, not {v:?}"))
                        })?,
                );
            }
            "note" => note = Some(v.clone()),
            other => return Err(at(line, format!("unknown header key {other:?}"))),
        }
    }
    let missing = |k: &str| at(1, format!("missing header key `{k}:`"));
    let mut meta = Meta {
        id: id.ok_or_else(|| missing("id"))?,
        title: title.ok_or_else(|| missing("title"))?,
        protocol: protocol.ok_or_else(|| missing("protocol"))?,
        rfc: rfc.ok_or_else(|| missing("rfc"))?,
        level: level.ok_or_else(|| missing("level"))?,
        needs,
        timeout,
        note,
    };
    if meta.needs.contains(&Need::Master) && meta.needs.contains(&Need::Slave) {
        // `needs: slave master`: the target is a slave and the runner knows its master.
        meta.needs.retain(|n| *n != Need::Master);
        meta.needs.push(Need::MasterPeer);
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "id: mupdate/x\ntitle: t\nprotocol: mupdate\nrfc: RFC3656 4.9\nlevel: MUST\n";

    fn err(body: &str) -> ParseError {
        parse_scenario("f.scn", &format!("{HEAD}{body}")).unwrap_err()
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = err("[test]\nopen c1\nc1 > A $bogus\n");
        assert_eq!((e.line, e.col), (8, 8), "{e}");
        assert!(
            e.to_string()
                .starts_with("f.scn:8:8: unknown placeholder $bogus"),
            "{e}"
        );
        let e = err("[test]\nc1 > NOOP\n");
        assert_eq!((e.line, e.col), (7, 1));
        let e = err("[test]\nopen c1\nc1 < $tag OK (a\n");
        assert_eq!(e.line, 8);
        assert!(e.message.contains("missing ')'"), "{e}");
        let e = err("[test]\nopen c1\nc1 ?? x\n");
        assert_eq!((e.line, e.col), (8, 4));
        let e = err("[test]\nopen c1\nc1 < ${later}\n");
        assert!(e.message.contains("before any ${later=}"), "{e}");
        let e = err("[test]\nopen c1\nrace\n  c1 > A NOOP\n");
        assert!(e.message.contains("missing `end`"), "{e}");
        let e = parse_scenario("g.scn", "id: x\n[test]\nopen c\n").unwrap_err();
        assert!(e.message.contains("missing header key"), "{e}");
        let e = parse_scenario("g.scn", "id: x\nlevel: SOMETIMES\n[test]\nopen c\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn parses_every_step_kind() {
        let sc = parse_scenario(
            "f.scn",
            &format!(
                "{HEAD}needs: master cap:partial-update mech:plain\ntimeout: 9\n[setup]\nopen a\nopen b raw\n[test]\n\
                 a > F1 FIND \"$box\"\na >> X\\r\\n\na >! F2 FIND \"$box\"\na < $tag OK ...\na << * ${{n=}} X\n\
                 a <= + go ahead ${{n}}\na <~ \\* BAD.*\na closed\nb silent\nb unordered\n  $tag A\n  $tag B\nend\n\
                 b collect s mine until $tag OK ...\nb collect t until $tag OK ...\nsame s t\ncount s 2\nhas s $any MAILBOX ...\n\
                 race\n  a > R1 RESERVE \"$box\" \"h\"\n  b > R2 RESERVE \"$box\" \"i\"\nend\nlogin b user2\nstarttls a\ntls b\nclose a\n\
                 [cleanup]\nopen z noauth\n"
            ),
        )
        .unwrap();
        assert_eq!(sc.meta.timeout, Some(9));
        assert_eq!(
            sc.meta.needs,
            vec![
                Need::Master,
                Need::Capability("PARTIAL-UPDATE".into()),
                Need::Mechanism("PLAIN".into())
            ]
        );
        assert_eq!(sc.setup.len(), 2);
        assert_eq!(sc.test.len(), 20);
        assert_eq!(sc.cleanup.len(), 1);
    }

    #[test]
    fn master_peer_opens_and_needs() {
        let sc = parse_scenario(
            "f.scn",
            &format!("{HEAD}needs: slave master\nopen s\nopen m master\nopen n master noauth\n"),
        )
        .unwrap();
        assert_eq!(sc.meta.needs, vec![Need::Slave, Need::MasterPeer]);
        assert!(matches!(
            &sc.test[1].kind,
            StepKind::Open { conn, mode: OpenMode::Login, master: true } if conn == "m"
        ));
        assert!(matches!(
            sc.test[2].kind,
            StepKind::Open {
                mode: OpenMode::NoAuth,
                master: true,
                ..
            }
        ));
        assert!(sc.effective_needs().contains(&Need::MasterPeer));
        // `open NAME master` without the header need: an error at that line.
        let e = err("needs: slave\nopen s\nopen m master\n");
        assert_eq!(e.line, 8, "{e}");
        assert!(e.message.contains("needs: slave master"), "{e}");
        let e = err("open m master bogus\n");
        assert_eq!((e.line, e.col), (6, 6), "{e}");
    }

    #[test]
    fn lacks_last_or_closed_nocap() {
        let sc = parse_scenario(
            "f.scn",
            &format!(
                "{HEAD}needs: nocap:partial-update\nopen c\nc < $tag BAD ... or closed\nc << * BYE ... or closed\n\
                 c < $tag OK ...\nlacks c X1 ...\nlast c $tag OK ...\nc collect s until $tag OK ...\nlast s * ${{n=}} EXISTS\n"
            ),
        )
        .unwrap();
        assert_eq!(
            sc.meta.needs,
            vec![Need::NoCapability("PARTIAL-UPDATE".into())]
        );
        let kinds: Vec<&StepKind> = sc.test.iter().map(|s| &s.kind).collect();
        assert!(
            matches!(kinds[1], StepKind::Expect { or_closed: true, pattern, .. } if pattern.src == "$tag BAD ...")
        );
        assert!(matches!(
            kinds[2],
            StepKind::Eventually {
                or_closed: true,
                ..
            }
        ));
        assert!(matches!(
            kinds[3],
            StepKind::Expect {
                or_closed: false,
                ..
            }
        ));
        assert!(matches!(kinds[4], StepKind::Lacks { conn, .. } if conn == "c"));
        assert!(matches!(kinds[5], StepKind::Last { conn: true, .. }));
        assert!(matches!(kinds[7], StepKind::Last { conn: false, name, .. } if name == "s"));
        // Errors, each with its line and column.
        let e = err("open c\nlacks d X1 ...\n");
        assert_eq!((e.line, e.col), (7, 7), "{e}");
        assert!(e.message.contains("not an opened connection"), "{e}");
        let e = err("open c\nlacks c ${x=}\n");
        assert_eq!((e.line, e.col), (7, 9), "{e}");
        assert!(e.message.contains("cannot capture"), "{e}");
        let e = err("open c\nlast c\n");
        assert!(e.message.contains("last SET|CONN PATTERN"), "{e}");
        let e = err("open c\nc collect c until $tag OK ...\nlast c X\n");
        assert_eq!(e.line, 8, "{e}");
        assert!(e.message.contains("both a set and a connection"), "{e}");
        let e = err("open c\nc < or closed\n");
        assert_eq!((e.line, e.col), (7, 5), "{e}");
        assert!(e.message.contains("needs an argument"), "{e}");
        let e = err("needs: nocap:\nopen c\n");
        assert!(e.message.contains("unknown need"), "{e}");
    }

    #[test]
    fn steps_without_block_header_are_test_steps() {
        let sc = parse_scenario("f.scn", &format!("{HEAD}open c\nc > N NOOP\n")).unwrap();
        assert_eq!(sc.test.len(), 2);
    }

    #[test]
    fn race_is_mupdate_only() {
        let text = "id: imap/x\ntitle: t\nprotocol: imap\nrfc: RFC3502 3\nlevel: MUST\nopen a\nopen b\nrace\n a > A NOOP\n b > B NOOP\nend\n";
        let e = parse_scenario("f.scn", text).unwrap_err();
        assert!(e.message.contains("MUPDATE only"), "{e}");
    }
}
