//! The mailbox namespace: CREATE, DELETE, RENAME, listing and subscriptions, each one durable
//! index transaction, and the counters behind mailbox ids and UIDVALIDITY.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use redb::ReadableTable;

use super::index::{
    INLINE_SEGMENTS, MAILBOXES, MESSAGES, META, MailboxRecord, SUBSCRIPTIONS, mailbox_key,
    split_key,
};
use super::{MailStore, MailboxView, StoreError, db_err, validate_name};
use crate::imap::faults::Fault;

/// The `UidValidityFromClock` fault: the current time in seconds, nothing more.
fn clock_uid_validity() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(now).unwrap_or(u32::MAX)
}

impl MailStore {
    fn next_uid_validity(tx: &redb::WriteTransaction) -> Result<u32, StoreError> {
        let mut meta = tx.open_table(META).map_err(db_err)?;
        let last = meta
            .get("last_uid_validity")
            .map_err(db_err)?
            .map(|v| v.value())
            .unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let v = now.max(last + 1).min(u64::from(u32::MAX));
        meta.insert("last_uid_validity", v).map_err(db_err)?;
        Ok(u32::try_from(v).unwrap_or(u32::MAX))
    }

    fn next_mailbox_id(tx: &redb::WriteTransaction) -> Result<u64, StoreError> {
        let mut meta = tx.open_table(META).map_err(db_err)?;
        let id = meta
            .get("next_mailbox_id")
            .map_err(db_err)?
            .map(|v| v.value())
            .unwrap_or(1);
        meta.insert("next_mailbox_id", id + 1).map_err(db_err)?;
        Ok(id)
    }

    /// Whether the mailbox exists.
    pub fn exists(&self, user: &str, name: &str) -> bool {
        self.state()
            .mailboxes
            .contains_key(&mailbox_key(user, name))
    }

    /// CREATE.
    pub fn create(&self, user: &str, name: &str) -> Result<(), StoreError> {
        validate_name(name)?;
        let _w = self.writer();
        let key = mailbox_key(user, name);
        if self.state().mailboxes.contains_key(&key) {
            return Err(StoreError::Exists);
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        let rec = MailboxRecord {
            id: Self::next_mailbox_id(&tx)?,
            uid_validity: if self.faults.has(Fault::UidValidityFromClock) {
                clock_uid_validity()
            } else {
                Self::next_uid_validity(&tx)?
            },
            uid_next: 1,
        };
        tx.open_table(MAILBOXES)
            .map_err(db_err)?
            .insert(key.as_str(), rec.encode().as_slice())
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        self.state().mailboxes.insert(
            key,
            MailboxView {
                id: rec.id,
                uid_validity: rec.uid_validity,
                uid_next: 1,
                messages: BTreeMap::new(),
                recent_claimed: 0,
                modseq: 0,
                flag_changes: BTreeMap::new(),
            },
        );
        Ok(())
    }

    /// DELETE: the mailbox and its messages.
    pub fn delete(&self, user: &str, name: &str) -> Result<(), StoreError> {
        let _w = self.writer();
        let key = mailbox_key(user, name);
        // Only what the transaction needs, not a copy of the view (a huge mailbox would
        // briefly double the store's memory).
        let found = self.state().mailboxes.get(&key).map(|view| {
            let uids: Vec<u32> = view.messages.keys().copied().collect();
            let segments: BTreeSet<u32> = view.messages.values().map(|m| m.segment).collect();
            (view.id, uids, segments)
        });
        let Some((id, uids, segments)) = found else {
            return Err(StoreError::NoMailbox);
        };
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(MAILBOXES)
            .map_err(db_err)?
            .remove(key.as_str())
            .map_err(db_err)?;
        {
            let mut msgs = tx.open_table(MESSAGES).map_err(db_err)?;
            for uid in uids {
                msgs.remove((id, uid)).map_err(db_err)?;
            }
            let mut inline = tx.open_table(INLINE_SEGMENTS).map_err(db_err)?;
            for seg in segments {
                inline.remove((id, seg)).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        {
            let mut st = self.state();
            st.mailboxes.remove(&key);
            if let Some(w) = st.watchers.remove(&id) {
                w.send_modify(|v| *v += 1);
            }
        }
        self.forget_unwritten(id, None);
        let blobs = self.dir.join("blobs").join(id.to_string());
        if blobs.exists() {
            fs::remove_dir_all(blobs)?;
        }
        Ok(())
    }

    /// RENAME (messages keep their UIDs; the id and UIDVALIDITY move with the name).
    pub fn rename(&self, user: &str, from: &str, to: &str) -> Result<(), StoreError> {
        validate_name(to)?;
        let _w = self.writer();
        let (kf, kt) = (mailbox_key(user, from), mailbox_key(user, to));
        let rec = self.state().mailboxes.get(&kf).map(|view| MailboxRecord {
            id: view.id,
            uid_validity: view.uid_validity,
            uid_next: view.uid_next,
        });
        let Some(rec) = rec else {
            return Err(StoreError::NoMailbox);
        };
        if self.state().mailboxes.contains_key(&kt) {
            return Err(StoreError::Exists);
        }
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(MAILBOXES).map_err(db_err)?;
            t.remove(kf.as_str()).map_err(db_err)?;
            t.insert(kt.as_str(), rec.encode().as_slice())
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        let mut st = self.state();
        if let Some(v) = st.mailboxes.remove(&kf) {
            st.mailboxes.insert(kt, v);
        }
        Ok(())
    }

    /// The names of `user`'s mailboxes, sorted.
    pub fn list(&self, user: &str) -> Vec<String> {
        let prefix = format!("{user}\0");
        self.state()
            .mailboxes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| split_key(k).map(|(_, n)| n.to_string()))
            .collect()
    }

    /// Every mailbox of every user as (user, name) (for the MUPDATE resync).
    pub fn all_mailboxes(&self) -> Vec<(String, String)> {
        self.state()
            .mailboxes
            .keys()
            .filter_map(|k| split_key(k).map(|(u, n)| (u.to_string(), n.to_string())))
            .collect()
    }

    /// The subscribed names of `user`.
    pub fn subscriptions(&self, user: &str) -> Vec<String> {
        let prefix = format!("{user}\0");
        self.state()
            .subscriptions
            .iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    /// SUBSCRIBE (`on`) or UNSUBSCRIBE.
    pub fn subscribe(&self, user: &str, name: &str, on: bool) -> Result<(), StoreError> {
        let _w = self.writer();
        let key = mailbox_key(user, name);
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(SUBSCRIPTIONS).map_err(db_err)?;
            if on {
                t.insert(key.as_str(), 1).map_err(db_err)?;
            } else {
                t.remove(key.as_str()).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        let mut st = self.state();
        if on {
            st.subscriptions.insert(key);
        } else {
            st.subscriptions.remove(&key);
        }
        Ok(())
    }
}
