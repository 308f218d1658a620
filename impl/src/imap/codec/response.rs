//! Writing IMAP response data: strings as quoted or literal, NIL, flag lists.

/// Append `s` as a `string`: quoted when it is short plain text, a literal otherwise.
pub fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() < 1024
        && s.iter()
            .all(|&b| b != b'\r' && b != b'\n' && b != 0 && b < 0x80);
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
}

/// Append `s` as an `nstring` (NIL when absent).
pub fn push_nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => push_string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Append a mailbox name: quoted (or literal) always, which every client accepts.
pub fn push_mailbox(out: &mut Vec<u8>, name: &str) {
    push_string(out, name.as_bytes());
}

/// `(flag flag ...)`.
pub fn flag_list<S: AsRef<str>>(flags: impl IntoIterator<Item = S>) -> String {
    let mut s = String::from("(");
    for (i, f) in flags.into_iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(f.as_ref());
    }
    s.push(')');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let mut v = Vec::new();
        push_string(&mut v, b"a \"b\"");
        assert_eq!(v, b"\"a \\\"b\\\"\"");
        let mut v = Vec::new();
        push_string(&mut v, b"a\r\nb");
        assert_eq!(v, b"{4}\r\na\r\nb");
        assert_eq!(flag_list(["\\Seen", "x"]), "(\\Seen x)");
    }
}
