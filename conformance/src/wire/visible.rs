//! Bytes made readable for reports: CR and LF as `\r` `\n`, TAB as `\t`, backslash doubled, other
//! non-printable bytes as `\xHH`. Nothing is hidden, so two different byte strings never print
//! the same.

/// Render `bytes` visibly (see the module docs).
pub fn visible(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Like [`visible`], shortened to about `max` characters with a note of how much was cut.
pub fn visible_capped(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        return visible(bytes);
    }
    let head = bytes.get(..max).unwrap_or(bytes);
    format!(
        "{}... ({} more bytes)",
        visible(head),
        bytes.len().saturating_sub(max)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_line_ends_and_binary() {
        assert_eq!(visible(b"a\r\n\t\\\x00\xff"), "a\\r\\n\\t\\\\\\x00\\xff");
    }

    #[test]
    fn caps_long_input() {
        let s = visible_capped(&[b'a'; 100], 10);
        assert_eq!(s, "aaaaaaaaaa... (90 more bytes)");
    }
}
