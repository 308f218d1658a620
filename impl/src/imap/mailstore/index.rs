//! The redb index: table definitions and the byte encodings of its records.

use redb::TableDefinition;

use crate::imap::codec::datetime::InternalDate;

/// `user \0 mailbox` → [`MailboxRecord`] bytes.
pub const MAILBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("mailboxes");
/// `(mailbox id, uid)` → [`MessageRecord`] bytes.
pub const MESSAGES: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("messages");
/// `(mailbox id, segment)` → the bytes of an inline segment (an APPEND whose literals were
/// small enough to be committed inside the index transaction; see the module docs).
pub const INLINE_SEGMENTS: TableDefinition<(u64, u32), &[u8]> =
    TableDefinition::new("inline_segments");
/// Counters: `next_mailbox_id`, `last_uid_validity`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `user \0 mailbox` of subscribed names → 1.
pub const SUBSCRIPTIONS: TableDefinition<&str, u8> = TableDefinition::new("subscriptions");

/// The key of a mailbox of a user.
pub fn mailbox_key(user: &str, name: &str) -> String {
    format!("{user}\0{name}")
}

/// Split a mailbox key into user and name.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    key.split_once('\0')
}

/// The persistent part of a mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailboxRecord {
    /// Internal id (names blob directories; never reused).
    pub id: u64,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// UIDNEXT.
    pub uid_next: u32,
}

impl MailboxRecord {
    /// 16 octets, little-endian.
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..12].copy_from_slice(&self.uid_validity.to_le_bytes());
        b[12..].copy_from_slice(&self.uid_next.to_le_bytes());
        b
    }

    /// Inverse of [`MailboxRecord::encode`].
    pub fn decode(b: &[u8]) -> Option<MailboxRecord> {
        Some(MailboxRecord {
            id: u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
            uid_validity: u32::from_le_bytes(b.get(8..12)?.try_into().ok()?),
            uid_next: u32::from_le_bytes(b.get(12..16)?.try_into().ok()?),
        })
    }
}

/// The persistent part of a message (the body is a byte range of a segment file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    /// Size in octets.
    pub size: u64,
    /// The segment file holding the body (named by the first UID of its APPEND).
    pub segment: u32,
    /// Offset of the body in the segment.
    pub offset: u64,
    /// INTERNALDATE.
    pub date: InternalDate,
    /// Flags (without `\Recent`).
    pub flags: Vec<String>,
}

impl MessageRecord {
    /// size u64, segment u32, offset u64, unix i64, zone i32, then the flags separated by
    /// spaces.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.flags.len() * 8);
        b.extend_from_slice(&self.size.to_le_bytes());
        b.extend_from_slice(&self.segment.to_le_bytes());
        b.extend_from_slice(&self.offset.to_le_bytes());
        b.extend_from_slice(&self.date.unix.to_le_bytes());
        b.extend_from_slice(&self.date.zone_minutes.to_le_bytes());
        b.extend_from_slice(self.flags.join(" ").as_bytes());
        b
    }

    /// Inverse of [`MessageRecord::encode`].
    pub fn decode(b: &[u8]) -> Option<MessageRecord> {
        let flags = std::str::from_utf8(b.get(32..)?).ok()?;
        Some(MessageRecord {
            size: u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
            segment: u32::from_le_bytes(b.get(8..12)?.try_into().ok()?),
            offset: u64::from_le_bytes(b.get(12..20)?.try_into().ok()?),
            date: InternalDate {
                unix: i64::from_le_bytes(b.get(20..28)?.try_into().ok()?),
                zone_minutes: i32::from_le_bytes(b.get(28..32)?.try_into().ok()?),
            },
            flags: flags
                .split(' ')
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let m = MailboxRecord {
            id: 7,
            uid_validity: 99,
            uid_next: 3,
        };
        assert_eq!(MailboxRecord::decode(&m.encode()), Some(m));
        let r = MessageRecord {
            size: 5,
            segment: 3,
            offset: 9,
            date: InternalDate {
                unix: -3,
                zone_minutes: -420,
            },
            flags: vec!["\\Seen".into(), "x".into()],
        };
        assert_eq!(MessageRecord::decode(&r.encode()), Some(r));
        assert_eq!(MailboxRecord::decode(b"short"), None);
    }
}
