//! Mailbox commands: SELECT/EXAMINE and keeping the selected view in step, CREATE, DELETE and
//! RENAME (through MUPDATE in backend mode), SUBSCRIBE, LIST/LSUB, STATUS, EXPUNGE.

use std::collections::BTreeSet;

use super::{Selected, Session};
use crate::imap::codec::command::StatusItem;
use crate::imap::codec::response::{flag_list, push_mailbox};
use crate::imap::faults::Fault;
use crate::imap::mailstore::StoreError;
use crate::imap::reconcile::QUARANTINED;

impl Session {
    pub(super) fn select(&mut self, tag: &str, name: String, read_only: bool) {
        self.selected = None;
        let user = self.user();
        let store = self.shared.store.clone();
        if self.quarantined(&user, &name) {
            self.tagged(tag, "NO", QUARANTINED);
            return;
        }
        let Some(view) = store.view(&user, &name) else {
            self.tagged(tag, "NO", "No such mailbox");
            return;
        };
        let recent: BTreeSet<u32> = if read_only {
            BTreeSet::new()
        } else {
            store.claim_recent(view.id).into_iter().collect()
        };
        let uids: Vec<u32> = view.messages.keys().copied().collect();
        let first_unseen = view
            .messages
            .values()
            .position(|m| !m.flags.contains("\\Seen"));
        self.push_line("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
        self.push_line(
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Limited",
        );
        self.push_line(&format!("* {} EXISTS", uids.len()));
        self.push_line(&format!("* {} RECENT", recent.len()));
        if let Some(p) = first_unseen {
            self.push_line(&format!("* OK [UNSEEN {}] First unseen", p + 1));
        }
        self.push_line(&format!(
            "* OK [UIDVALIDITY {}] UIDs valid",
            view.uid_validity
        ));
        self.push_line(&format!(
            "* OK [UIDNEXT {}] Predicted next UID",
            view.uid_next
        ));
        let watch = store.watch(view.id);
        self.selected = Some(Selected {
            name,
            id: view.id,
            read_only,
            uids,
            recent,
            watch,
            modseq_seen: view.modseq,
        });
        let (code, cmd) = if read_only {
            ("[READ-ONLY]", "EXAMINE")
        } else {
            ("[READ-WRITE]", "SELECT")
        };
        self.tagged(tag, "OK", &format!("{code} {cmd} completed"));
    }

    /// Bring the selected view up to date: EXPUNGE (only if `allow_expunge`), then EXISTS and
    /// RECENT for new messages.
    pub(super) fn sync_selected(&mut self, allow_expunge: bool) {
        let announce_new = !self.shared.faults.has(Fault::NoExistsToOtherSessions);
        self.sync_selected_inner(allow_expunge, announce_new);
    }

    /// [`Session::sync_selected`]; `announce_new` false only under the
    /// `NoExistsToOtherSessions` fault (then only the appending session learns of new
    /// messages).
    pub(super) fn sync_selected_inner(&mut self, allow_expunge: bool, announce_new: bool) {
        let store = self.shared.store.clone();
        let faults = &self.shared.faults;
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        sel.watch.borrow_and_update();
        let mut lines = Vec::new();
        // Under the store's short lock, without copying the mailbox.
        let new = store.with_view(sel.id, |view| {
            if allow_expunge {
                for i in (0..sel.uids.len()).rev() {
                    if let Some(u) = sel.uids.get(i)
                        && !view.messages.contains_key(u)
                    {
                        lines.push(format!("* {} EXPUNGE", i + 1));
                        sel.recent.remove(u);
                        sel.uids.remove(i);
                    }
                }
            }
            if view.modseq > sel.modseq_seen {
                // Flags changed by other sessions (RFC 3501 7.4.2: unsolicited FETCH).
                let changed = view
                    .flag_changes
                    .iter()
                    .filter(|(_, m)| **m > sel.modseq_seen);
                for (uid, _) in changed {
                    if let (Ok(i), Some(meta)) =
                        (sel.uids.binary_search(uid), view.messages.get(uid))
                    {
                        let mut flags: Vec<&str> = meta.flags.iter().collect();
                        if sel.recent.contains(uid) {
                            flags.push("\\Recent");
                        }
                        lines.push(format!("* {} FETCH (FLAGS {})", i + 1, flag_list(flags)));
                    }
                }
                sel.modseq_seen = view.modseq;
            }
            if !announce_new || (sel.read_only && faults.has(Fault::NoExistsToReadOnly)) {
                return Vec::new();
            }
            let last = sel.uids.last().copied().unwrap_or(0);
            view.messages
                .range(last.saturating_add(1)..)
                .map(|(u, _)| *u)
                .collect::<Vec<u32>>()
        });
        match new {
            None if allow_expunge => {
                // The mailbox was deleted: every message is gone.
                for i in (0..sel.uids.len()).rev() {
                    lines.push(format!("* {} EXPUNGE", i + 1));
                }
                sel.uids.clear();
                sel.recent.clear();
            }
            Some(new) if !new.is_empty() => {
                sel.uids.extend(&new);
                if !sel.read_only {
                    sel.recent.extend(store.claim_recent(sel.id));
                }
                let exists = if self.shared.faults.has(Fault::ExistsCountsNewOnly) {
                    new.len()
                } else {
                    sel.uids.len()
                };
                lines.push(format!("* {exists} EXISTS"));
                lines.push(format!("* {} RECENT", sel.recent.len()));
            }
            _ => {}
        }
        for l in lines {
            self.push_line(&l);
        }
    }

    /// Whether `user`'s mailbox `name` is quarantined (backend mode: held here, recorded on
    /// another server by the MUPDATE master; see [`crate::imap::reconcile`]).
    pub(super) fn quarantined(&self, user: &str, name: &str) -> bool {
        self.shared
            .murder
            .as_ref()
            .is_some_and(|m| m.is_quarantined(user, name))
    }

    /// CREATE, going through RESERVE/ACTIVATE in backend mode (RFC 3656 4.9).
    pub(super) async fn create_mailbox(&self, user: &str, name: &str) -> Result<(), String> {
        let store = self.shared.store.clone();
        if store.exists(user, name) {
            return Err("Mailbox already exists".into());
        }
        if let Some(murder) = &self.shared.murder {
            return murder.create(user, name).await;
        }
        let (u, n) = (user.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || store.create(&u, &n))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
    }

    pub(super) async fn create(&mut self, tag: &str, name: &str) {
        let user = self.user();
        let name = name.trim_end_matches('/');
        match self.create_mailbox(&user, name).await {
            Ok(()) => self.tagged(tag, "OK", "CREATE completed"),
            Err(e) => self.tagged(tag, "NO", &e),
        }
    }

    pub(super) async fn delete(&mut self, tag: &str, name: &str) {
        let user = self.user();
        if name == "INBOX" {
            self.tagged(tag, "NO", "INBOX cannot be deleted");
            return;
        }
        if self.selected.as_ref().is_some_and(|s| s.name == name) {
            self.selected = None;
        }
        if self.quarantined(&user, name) {
            self.tagged(tag, "NO", QUARANTINED);
            return;
        }
        if let Some(murder) = self.shared.murder.clone() {
            if !self.shared.store.exists(&user, name) {
                self.tagged(tag, "NO", "No such mailbox");
                return;
            }
            match murder.delete(&user, name).await {
                Ok(()) => self.tagged(tag, "OK", "DELETE completed"),
                Err(e) => self.tagged(tag, "NO", &e),
            }
            return;
        }
        let store = self.shared.store.clone();
        let (u, n) = (user.clone(), name.to_string());
        match tokio::task::spawn_blocking(move || store.delete(&u, &n)).await {
            Ok(Ok(())) => self.tagged(tag, "OK", "DELETE completed"),
            Ok(Err(StoreError::NoMailbox)) => self.tagged(tag, "NO", "No such mailbox"),
            Ok(Err(e)) => self.tagged(tag, "NO", &format!("DELETE failed: {e}")),
            Err(e) => self.tagged(tag, "NO", &format!("DELETE failed: {e}")),
        }
    }

    pub(super) async fn rename(&mut self, tag: &str, from: &str, to: &str) {
        let user = self.user();
        if from == "INBOX" {
            self.tagged(tag, "NO", "Renaming INBOX is not supported");
            return;
        }
        if !self.shared.store.exists(&user, from) {
            self.tagged(tag, "NO", "No such mailbox");
            return;
        }
        if self.shared.store.exists(&user, to) {
            self.tagged(tag, "NO", "Target mailbox already exists");
            return;
        }
        if self.quarantined(&user, from) {
            self.tagged(tag, "NO", QUARANTINED);
            return;
        }
        let r = match self.shared.murder.clone() {
            Some(murder) => murder.rename(&user, from, to).await,
            None => {
                let store = self.shared.store.clone();
                let (u, f, t) = (user.clone(), from.to_string(), to.to_string());
                match tokio::task::spawn_blocking(move || store.rename(&u, &f, &t)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("RENAME failed: {e}")),
                    Err(e) => Err(format!("RENAME failed: {e}")),
                }
            }
        };
        match r {
            Ok(()) => {
                if let Some(sel) = self.selected.as_mut()
                    && sel.name == from
                {
                    sel.name = to.to_string();
                }
                self.tagged(tag, "OK", "RENAME completed");
            }
            Err(e) => self.tagged(tag, "NO", &e),
        }
    }

    pub(super) fn subscribe(&mut self, tag: &str, name: &str, on: bool) {
        let user = self.user();
        match self.shared.store.subscribe(&user, name, on) {
            Ok(()) => self.tagged(tag, "OK", "Completed"),
            Err(e) => self.tagged(tag, "NO", &e.to_string()),
        }
    }

    pub(super) fn list(&mut self, tag: &str, reference: &[u8], pattern: &[u8], lsub: bool) {
        let cmd = if lsub { "LSUB" } else { "LIST" };
        if pattern.is_empty() && !lsub {
            self.push_line("* LIST (\\Noselect) \"/\" \"\"");
            self.tagged(tag, "OK", "LIST completed");
            return;
        }
        let mut full = reference.to_vec();
        full.extend_from_slice(pattern);
        let full = String::from_utf8_lossy(&full).into_owned();
        let user = self.user();
        let names = if lsub {
            self.shared.store.subscriptions(&user)
        } else {
            self.shared.store.list(&user)
        };
        for n in names {
            if self.quarantined(&user, &n) {
                continue;
            }
            if list_match(full.as_bytes(), n.as_bytes())
                || (n == "INBOX" && list_match(full.to_ascii_uppercase().as_bytes(), b"INBOX"))
            {
                let mut line = format!("* {cmd} () \"/\" ").into_bytes();
                push_mailbox(&mut line, &n);
                self.out.extend_from_slice(&line);
                self.out.extend_from_slice(b"\r\n");
            }
        }
        self.tagged(tag, "OK", &format!("{cmd} completed"));
    }

    pub(super) fn status(&mut self, tag: &str, name: &str, items: &[StatusItem]) {
        let user = self.user();
        if self.quarantined(&user, name) {
            self.tagged(tag, "NO", QUARANTINED);
            return;
        }
        let Some(mut st) = self.shared.store.status(&user, name) else {
            self.tagged(tag, "NO", "No such mailbox");
            return;
        };
        if self.shared.faults.has(Fault::StatusUidNextFromMaxUid)
            && let Some(view) = self.shared.store.view(&user, name)
        {
            let max = view.messages.keys().next_back().copied().unwrap_or(0);
            st.uid_next = max.saturating_add(1);
        }
        let parts: Vec<String> = items
            .iter()
            .map(|i| match i {
                StatusItem::Messages => format!("MESSAGES {}", st.messages),
                StatusItem::Recent => format!("RECENT {}", st.recent),
                StatusItem::UidNext => format!("UIDNEXT {}", st.uid_next),
                StatusItem::UidValidity => format!("UIDVALIDITY {}", st.uid_validity),
                StatusItem::Unseen => format!("UNSEEN {}", st.unseen),
            })
            .collect();
        let mut line = b"* STATUS ".to_vec();
        push_mailbox(&mut line, name);
        line.extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
        self.out.extend_from_slice(&line);
        self.tagged(tag, "OK", "STATUS completed");
    }

    pub(super) async fn expunge(&mut self, tag: &str) {
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        if sel.read_only {
            self.tagged(tag, "NO", "Mailbox is read-only");
            return;
        }
        let (store, id) = (self.shared.store.clone(), sel.id);
        match tokio::task::spawn_blocking(move || store.expunge(id)).await {
            Ok(Ok(_)) => {
                self.sync_selected(true);
                self.tagged(tag, "OK", "EXPUNGE completed");
            }
            _ => self.tagged(tag, "NO", "EXPUNGE failed"),
        }
    }
}

/// LIST pattern matching: `*` matches anything, `%` anything but the separator `/`.
/// Dynamic programming over (pattern, name) prefixes: O(|pattern| * |name|).
pub fn list_match(pattern: &[u8], name: &[u8]) -> bool {
    // m[j]: pattern prefix processed so far matches name prefix of length j.
    let mut m = vec![false; name.len() + 1];
    if let Some(first) = m.first_mut() {
        *first = true;
    }
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            b'*' | b'%' => {
                let mut reach = false;
                for j in 0..=name.len() {
                    let here = m.get(j).copied().unwrap_or(false);
                    if here {
                        reach = true;
                    }
                    if let Some(n) = next.get_mut(j) {
                        *n = reach;
                    }
                    if p == b'%' && name.get(j) == Some(&b'/') {
                        reach = false;
                    }
                }
            }
            c => {
                for j in 0..name.len() {
                    if m.get(j).copied().unwrap_or(false)
                        && name.get(j) == Some(&c)
                        && let Some(n) = next.get_mut(j + 1)
                    {
                        *n = true;
                    }
                }
            }
        }
        m = next;
    }
    m.last().copied().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::list_match;

    #[test]
    pub(super) fn list_patterns() {
        assert!(list_match(b"*", b"a/b"));
        assert!(!list_match(b"%", b"a/b"));
        assert!(list_match(b"a/%", b"a/b"));
        assert!(list_match(b"INBOX", b"INBOX"));
        assert!(!list_match(b"x", b"y"));
    }
}
