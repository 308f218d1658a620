//! RFC 5322 message pieces that FETCH needs: header/body split, header fields, ENVELOPE and a
//! simple BODYSTRUCTURE. Bodies are files; only the header is read into memory (bounded).

use std::io::Read;
use std::path::Path;

use super::codec::response::{push_nstring, push_string};

/// How much of a message is scanned for the end of its header.
pub const MAX_HEADER_SCAN: usize = 1 << 20;

/// The header (including the blank line) of the message at `offset` (of `size` octets) in a
/// segment file.
pub fn read_header(path: &Path, offset: u64, size: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Seek;
    let mut f = std::fs::File::open(path)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut f = f.take(size);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = f.read(&mut chunk)?;
        if n == 0 {
            return Ok(buf);
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = header_end(buf.get(from..).unwrap_or_default()) {
            buf.truncate(from + end);
            return Ok(buf);
        }
        if buf.len() >= MAX_HEADER_SCAN {
            return Ok(buf);
        }
    }
}

/// Offset just past the blank line ending the header, if present.
pub fn header_end(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = b.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The header fields of `header` as (name, full raw field including its line ends).
pub fn fields(header: &[u8]) -> Vec<(String, &[u8])> {
    let mut out: Vec<(String, &[u8])> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        let line_end = header
            .get(i..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map_or(header.len(), |p| i + p + 1);
        let line = header.get(i..line_end).unwrap_or_default();
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation && i > start {
            push_field(&mut out, header.get(start..i).unwrap_or_default());
            start = i;
        }
        if line == b"\r\n" || line == b"\n" {
            start = line_end;
        }
        i = line_end;
    }
    if start < header.len() {
        push_field(&mut out, header.get(start..).unwrap_or_default());
    }
    out
}

fn push_field<'a>(out: &mut Vec<(String, &'a [u8])>, raw: &'a [u8]) {
    if let Some(colon) = raw.iter().position(|&b| b == b':') {
        let name = String::from_utf8_lossy(raw.get(..colon).unwrap_or_default())
            .trim()
            .to_ascii_uppercase();
        out.push((name, raw));
    }
}

/// The unfolded, trimmed value of the first field called `name` (upper-case).
pub fn field_value(header: &[u8], name: &str) -> Option<Vec<u8>> {
    let (_, raw) = fields(header).into_iter().find(|(n, _)| n == name)?;
    let colon = raw.iter().position(|&b| b == b':')?;
    let v: Vec<u8> = raw
        .get(colon + 1..)?
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let s = String::from_utf8_lossy(&v).trim().to_string();
    Some(s.into_bytes())
}

/// `BODY[HEADER.FIELDS (..)]`: the matching fields followed by the blank line.
pub fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, raw) in fields(header) {
        if names.contains(&n) != not {
            out.extend_from_slice(raw);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn push_addresses(out: &mut Vec<u8>, value: Option<Vec<u8>>) {
    let Some(v) = value else {
        out.extend_from_slice(b"NIL");
        return;
    };
    let s = String::from_utf8_lossy(&v).into_owned();
    let mut addrs = Vec::new();
    let (mut depth, mut quoted, mut cur) = (0i32, false, String::new());
    for ch in s.chars() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                addrs.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    addrs.push(cur);
    let addrs: Vec<String> = addrs
        .into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    if addrs.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for a in addrs {
        let (name, spec) = match (a.rfind('<'), a.rfind('>')) {
            (Some(l), Some(r)) if l < r => (
                Some(
                    a.get(..l)
                        .unwrap_or_default()
                        .trim()
                        .trim_matches('"')
                        .to_string(),
                ),
                a.get(l + 1..r).unwrap_or_default().to_string(),
            ),
            _ => (None, a.clone()),
        };
        let name = name.filter(|n| !n.is_empty());
        let (mailbox, host) = match spec.rsplit_once('@') {
            Some((m, h)) => (m.to_string(), Some(h.to_string())),
            None => (spec.clone(), None),
        };
        out.push(b'(');
        push_nstring(out, name.as_deref().map(str::as_bytes));
        out.extend_from_slice(b" NIL ");
        push_string(out, mailbox.as_bytes());
        out.push(b' ');
        push_nstring(out, host.as_deref().map(str::as_bytes));
        out.push(b')');
    }
    out.push(b')');
}

/// The ENVELOPE structure of a message header (RFC 3501 7.4.2).
pub fn envelope(header: &[u8]) -> Vec<u8> {
    let mut out = b"(".to_vec();
    let get = |n: &str| field_value(header, n);
    push_nstring(&mut out, get("DATE").as_deref());
    out.push(b' ');
    push_nstring(&mut out, get("SUBJECT").as_deref());
    let from = get("FROM");
    for (i, name) in ["FROM", "SENDER", "REPLY-TO", "TO", "CC", "BCC"]
        .iter()
        .enumerate()
    {
        out.push(b' ');
        let v = get(name).or_else(|| if i == 1 || i == 2 { from.clone() } else { None });
        push_addresses(&mut out, v);
    }
    out.push(b' ');
    push_nstring(&mut out, get("IN-REPLY-TO").as_deref());
    out.push(b' ');
    push_nstring(&mut out, get("MESSAGE-ID").as_deref());
    out.push(b')');
    out
}

/// A single-part BODY / BODYSTRUCTURE from the Content-Type of the header (multipart bodies
/// are described as opaque single parts of their declared type).
pub fn body_structure(header: &[u8], size: u64, body_lines: u64) -> Vec<u8> {
    let ct = field_value(header, "CONTENT-TYPE")
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|| "text/plain".into());
    let main = ct.split(';').next().unwrap_or("text/plain").trim();
    let (ty, sub) = main.split_once('/').unwrap_or(("text", "plain"));
    let ty = if ty.eq_ignore_ascii_case("multipart") || ty.is_empty() {
        "application"
    } else {
        ty
    };
    let sub = if main.to_ascii_lowercase().starts_with("multipart") {
        "octet-stream"
    } else {
        sub
    };
    let enc = field_value(header, "CONTENT-TRANSFER-ENCODING")
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_else(|| "7BIT".into());
    let mut out = b"(".to_vec();
    push_string(&mut out, ty.to_ascii_uppercase().as_bytes());
    out.push(b' ');
    push_string(&mut out, sub.to_ascii_uppercase().as_bytes());
    out.extend_from_slice(b" (\"CHARSET\" \"US-ASCII\") NIL NIL ");
    push_string(&mut out, enc.to_ascii_uppercase().as_bytes());
    out.extend_from_slice(format!(" {size}").as_bytes());
    if ty.eq_ignore_ascii_case("text") {
        out.extend_from_slice(format!(" {body_lines}").as_bytes());
    }
    out.push(b')');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: Fred <fred@example.com>\r\nSubject: hi\r\n there\r\nTo: a@b, \"C, D\" <c@d>\r\n\r\nbody\r\n";

    #[test]
    fn header_pieces() {
        let end = header_end(MSG).unwrap();
        let h = &MSG[..end];
        assert_eq!(field_value(h, "SUBJECT").unwrap(), b"hi there");
        assert_eq!(
            header_fields(h, &["FROM".into()], false),
            b"From: Fred <fred@example.com>\r\n\r\n"
        );
        let env = String::from_utf8(envelope(h)).unwrap();
        assert!(
            env.contains("((\"Fred\" NIL \"fred\" \"example.com\"))"),
            "{env}"
        );
        assert!(
            env.contains("(NIL NIL \"a\" \"b\")(\"C, D\" NIL \"c\" \"d\")"),
            "{env}"
        );
        let bs = String::from_utf8(body_structure(h, 6, 1)).unwrap();
        assert_eq!(
            bs,
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 1)"
        );
    }
}
