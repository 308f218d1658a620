//! The on-disk layout in redb: one table of records, one of metadata, and the encoding of a
//! [`MailboxEntry`] as bytes.
//!
//! * `mailboxes`: mailbox name (raw bytes) → encoded entry. redb keeps it in byte order; the
//!   in-memory [`MailboxDb`] re-sorts it into Cyrus order on load.
//! * `meta`: `format` (= [`FORMAT_VERSION`]) and `seq` (sequence number of the last committed
//!   change, written in the same transaction as the changes it counts).
//!
//! Entry encoding: `0x00 location` for a reservation; `0x01 len(location) as u32 LE location acl`
//! for an active mailbox. redb checksums every page, so a torn write is detected by redb itself.

use std::fs::OpenOptions;
use std::path::Path;

use murder_model::{Change, MailboxDb, MailboxEntry, Record};
use redb::backends::FileBackend;
use redb::{Builder, Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;
use super::fault::{FaultInjector, FaultyBackend};

/// Records: name → encoded [`MailboxEntry`].
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("mailboxes");
/// Metadata: `format` and `seq`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Key of the format version in `meta`.
const META_FORMAT: &str = "format";
/// Key of the last committed sequence number in `meta`.
const META_SEQ: &str = "seq";
/// Version of this layout; a file with another version is refused.
pub const FORMAT_VERSION: u64 = 1;

const TAG_RESERVED: u8 = 0;
const TAG_ACTIVE: u8 = 1;

/// Encodes an entry for the `mailboxes` table.
pub fn encode_entry(entry: &MailboxEntry) -> Vec<u8> {
    match entry {
        MailboxEntry::Reserved { location } => {
            let mut out = Vec::with_capacity(1 + location.len());
            out.push(TAG_RESERVED);
            out.extend_from_slice(location);
            out
        }
        MailboxEntry::Active { location, acl } => {
            let mut out = Vec::with_capacity(5 + location.len() + acl.len());
            out.push(TAG_ACTIVE);
            // Locations longer than 4 GiB cannot reach the store: the codec limits lines.
            let len = u32::try_from(location.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(location);
            out.extend_from_slice(acl);
            out
        }
    }
}

/// Decodes an entry of the `mailboxes` table.
pub fn decode_entry(bytes: &[u8]) -> Result<MailboxEntry, StoreError> {
    match bytes.split_first() {
        Some((&TAG_RESERVED, location)) => Ok(MailboxEntry::Reserved {
            location: location.to_vec(),
        }),
        Some((&TAG_ACTIVE, rest)) => {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| StoreError::corrupt("active entry shorter than its header"))?;
            let len = usize::try_from(u32::from_le_bytes(*len))
                .map_err(|_| StoreError::corrupt("location length does not fit"))?;
            if len > rest.len() {
                return Err(StoreError::corrupt("location length past the entry's end"));
            }
            let (location, acl) = rest.split_at(len);
            Ok(MailboxEntry::Active {
                location: location.to_vec(),
                acl: acl.to_vec(),
            })
        }
        Some((tag, _)) => Err(StoreError::corrupt(format!("unknown entry tag {tag}"))),
        None => Err(StoreError::corrupt("empty entry")),
    }
}

/// Opens (creating if needed) the redb file and its tables with `cache_size` bytes of page
/// cache. `fault` wraps the file in a [`FaultyBackend`] for fault tests.
pub fn open_database(
    path: &Path,
    fault: Option<&FaultInjector>,
    cache_size: usize,
) -> Result<Database, StoreError> {
    let mut builder = Builder::new();
    builder.set_cache_size(cache_size);
    let db = match fault {
        None => builder.create(path).map_err(StoreError::storage)?,
        Some(fault) => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(StoreError::storage)?;
            let inner = FileBackend::new(file).map_err(StoreError::storage)?;
            builder
                .create_with_backend(FaultyBackend::new(inner, fault.clone()))
                .map_err(StoreError::storage)?
        }
    };
    ensure_tables(&db)?;
    Ok(db)
}

/// Fsyncs a directory (and its parent), so that a newly created store directory and file
/// survive a power failure; redb itself syncs only the file's contents.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let sync = |d: &Path| -> Result<(), StoreError> {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(StoreError::storage)
    };
    sync(dir)?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync(parent),
        _ => Ok(()),
    }
}

/// Creates the tables and the format marker on a new file; checks the marker on an old one.
fn ensure_tables(db: &Database) -> Result<(), StoreError> {
    {
        let txn = db.begin_read().map_err(StoreError::storage)?;
        if let Ok(meta) = txn.open_table(META) {
            return match meta.get(META_FORMAT).map_err(StoreError::storage)? {
                Some(v) if v.value() == FORMAT_VERSION => Ok(()),
                Some(v) => Err(StoreError::corrupt(format!(
                    "format version {} (this build reads {FORMAT_VERSION})",
                    v.value()
                ))),
                None => Err(StoreError::corrupt("format version missing")),
            };
        }
    }
    let mut txn = db.begin_write().map_err(StoreError::storage)?;
    txn.set_durability(Durability::Immediate)
        .map_err(StoreError::storage)?;
    {
        txn.open_table(RECORDS).map_err(StoreError::storage)?;
        let mut meta = txn.open_table(META).map_err(StoreError::storage)?;
        meta.insert(META_FORMAT, FORMAT_VERSION)
            .map_err(StoreError::storage)?;
        meta.insert(META_SEQ, 0).map_err(StoreError::storage)?;
    }
    txn.commit().map_err(StoreError::storage)
}

/// Reads every record and the last committed sequence number.
pub fn load(db: &Database) -> Result<(MailboxDb, u64), StoreError> {
    let txn = db.begin_read().map_err(StoreError::storage)?;
    let table = txn.open_table(RECORDS).map_err(StoreError::storage)?;
    // Straight into the database, without a `Vec<Record>` of everything first (that would
    // double the peak memory of a start-up).
    let state = table
        .iter()
        .map_err(StoreError::storage)?
        .map(|item| {
            let (name, entry) = item.map_err(StoreError::storage)?;
            Ok(Record {
                name: name.value().to_vec(),
                entry: decode_entry(entry.value())?,
            })
        })
        .collect::<Result<MailboxDb, StoreError>>()?;
    drop(table);
    drop(txn);
    let seq = load_seq(db)?;
    Ok((state, seq))
}

/// Reads only the last committed sequence number.
pub fn load_seq(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(StoreError::storage)?;
    let meta = txn.open_table(META).map_err(StoreError::storage)?;
    Ok(meta
        .get(META_SEQ)
        .map_err(StoreError::storage)?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// Writes `changes` and the new sequence number in one write transaction and commits it with
/// [`Durability::Immediate`]: when this returns `Ok`, an fsync covers all of them.
pub fn persist(db: &Database, changes: &[Change], seq: u64) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(StoreError::storage)?;
    txn.set_durability(Durability::Immediate)
        .map_err(StoreError::storage)?;
    {
        let mut records = txn.open_table(RECORDS).map_err(StoreError::storage)?;
        for change in changes {
            match change {
                Change::Upsert(r) => {
                    records
                        .insert(r.name.as_slice(), encode_entry(&r.entry).as_slice())
                        .map_err(StoreError::storage)?;
                }
                Change::Delete { name } => {
                    records
                        .remove(name.as_slice())
                        .map_err(StoreError::storage)?;
                }
            }
        }
        let mut meta = txn.open_table(META).map_err(StoreError::storage)?;
        meta.insert(META_SEQ, seq).map_err(StoreError::storage)?;
    }
    txn.commit().map_err(StoreError::storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        for entry in [
            MailboxEntry::Reserved {
                location: b"h!p".to_vec(),
            },
            MailboxEntry::Reserved {
                location: Vec::new(),
            },
            MailboxEntry::Active {
                location: b"host!part".to_vec(),
                acl: b"anyone\tlrs\t".to_vec(),
            },
            MailboxEntry::Active {
                location: Vec::new(),
                acl: Vec::new(),
            },
        ] {
            assert_eq!(decode_entry(&encode_entry(&entry)), Ok(entry));
        }
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for bytes in [&b""[..], b"\x02abc", b"\x01\x00", b"\x01\xff\x00\x00\x00ab"] {
            assert!(matches!(
                decode_entry(bytes),
                Err(StoreError::Corrupt { .. })
            ));
        }
    }
}
