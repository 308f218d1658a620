//! Backend mode: keeping the MUPDATE master's records and this backend's mailboxes consistent,
//! the way the stateright model `murder_model::murder::backend` checks it (with `repair`).
//!
//! # Operations (RFC 3656 4.9)
//! * CREATE: RESERVE, local create, ACTIVATE. RESERVE refused → NO, nothing local. RESERVE
//!   unanswered → NO, nothing local, reconcile owed (the reservation may have committed). Local
//!   create failed → DELETE the reservation (reconcile owed if that fails). ACTIVATE
//!   unanswered or refused → the mailbox stays (the reservation at our location keeps the name
//!   ours; the model keeps it too), CREATE answers OK, and the owed reconcile ACTIVATEs it.
//! * DELETE: FIND, then DELETE on the master, then the local delete (never the other order:
//!   an active record must always name a mailbox its backend holds). A name recorded on another
//!   server is quarantined instead (its record is not ours to delete). DELETE unanswered →
//!   NO, the mailbox stays, reconcile owed (it re-registers the mailbox if the DELETE had
//!   committed).
//! * RENAME: RESERVE the new name, local rename, ACTIVATE new + DELETE old; a failure after
//!   the local rename leaves a reconcile owed, which finishes the job.
//!
//! # Reconcile pass (like Cyrus `ctl_mboxlist -m`)
//! `LIST "<server-name>!"` gives the records at this backend's location; each held mailbox not
//! listed gets a `FIND`. Commands of one kind are pipelined (LIST, DELETEs, FINDs, RESERVEs,
//! ACTIVATEs: five round trips per [`super::mupdate_link::PIPELINE_DEPTH`] names), so a pass
//! over 1001 mailboxes the master does not know takes about 0.3 s and one over 1001 active ones
//! (a single LIST) about 25 ms in a debug build (`measure_reconcile_pass` in
//! `tests/imap_reconcile.rs`). Then, per name:
//! 1. held and recorded at our location (reserved, or active with another ACL or partition) →
//!    ACTIVATE (already active with our location and ACL: nothing to send);
//! 2. held but recorded elsewhere → **quarantined**: kept on disk untouched, but not served
//!    (SELECT, EXAMINE, STATUS, APPEND, COPY, DELETE and RENAME answer
//!    `NO [UNAVAILABLE] ...`, LIST and LSUB omit it); logged at warn. Never deleted: the data is
//!    the operator's to move or remove. The list is kept in `<data>/`[`QUARANTINE_FILE`], so it
//!    holds from the start after a restart, master reachable or not;
//! 3. held and unknown to the master → RESERVE; granted → ACTIVATE; refused (someone reserved
//!    it meanwhile) → quarantined as in 2. Never a blind ACTIVATE, which would steal a name
//!    another backend reserved while this one was down (the model's `Bugs::blind_reactivate`);
//! 4. recorded at our location but not held → DELETE (a stale reservation or record).
//!
//! Every pass re-evaluates every held mailbox, so a quarantine ends by itself once the other
//! server's record is gone. (The model's "give up the local copy" is this quarantine: the name
//! leaves what the backend serves and claims; the files stay.) A session that had the mailbox
//! selected before it was quarantined keeps its selection until it selects another.
//!
//! A pass runs at start-up before the listener opens (bounded by [`MupdateLink::timeout`] per
//! step, 30 s by default). If the master is unreachable, `imapd` starts anyway and serves its
//! mailboxes (they were its own when it stopped: this is the one window where a name another
//! backend took meanwhile is still served here, until the first pass succeeds), and passes are
//! retried every [`MupdateLink::retry_interval`] (default 30 s) until one succeeds; a pass also
//! runs at once after an operation lost the master mid-way, and every
//! [`MupdateLink::reconcile_interval`] (default 1 h) regardless. Passes and the MUPDATE part of
//! CREATE/DELETE/RENAME exclude each other (a read-write lock), so a pass never sees a
//! half-done operation of this backend. Outcomes are published on
//! [`MupdateLink::reconcile_status`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, RwLock};

use super::mailstore::{MailStore, StoreError};
use super::mupdate_link::{
    MupdateCommand, MupdateConnection, MupdateError, MupdateLink, is_active_at, mupdate_name,
    owner_acl,
};

/// The answer text for a quarantined mailbox.
pub const QUARANTINED: &str = "[UNAVAILABLE] Mailbox is quarantined: the MUPDATE master records \
                               it on another server (local copy kept; see the server log)";

/// What one successful reconcile pass did (MUPDATE names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Held mailboxes ACTIVATEd (their record at our location was a reservation or outdated).
    pub activated: Vec<String>,
    /// Held mailboxes unknown to the master, RESERVEd and ACTIVATEd.
    pub registered: Vec<String>,
    /// Records at our location for mailboxes not held, DELETEd.
    pub deleted: Vec<String>,
    /// Held mailboxes recorded elsewhere (or whose RESERVE was refused): not served.
    pub quarantined: Vec<String>,
    /// Held mailboxes already active at our location with our ACL.
    pub unchanged: usize,
}

/// The reconcile passes so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileStatus {
    /// Successful passes.
    pub passes: u64,
    /// Failed passes (master unreachable or refusing).
    pub failures: u64,
    /// A pass is owed (the last one failed, or an operation lost the master mid-way).
    pub pending: bool,
    /// The last successful pass.
    pub last: Option<ReconcileReport>,
    /// Why the last pass failed, when it did.
    pub last_error: Option<String>,
}

/// The backend's shared Murder state: the link, the quarantined mailboxes, the owed reconcile.
#[derive(Debug)]
pub struct MurderBackend {
    link: MupdateLink,
    store: Arc<MailStore>,
    /// `(user, mailbox)` held locally but recorded on another server.
    quarantine: Mutex<BTreeSet<(String, String)>>,
    /// Where the quarantine list is kept.
    quarantine_file: PathBuf,
    /// Operations take it shared, a reconcile pass exclusively.
    ops: RwLock<()>,
    pending: AtomicBool,
    wake: Arc<Notify>,
}

fn unavailable(e: &MupdateError) -> String {
    format!("[UNAVAILABLE] {e}")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

impl MurderBackend {
    /// The backend state for `link` over `store` (nothing quarantined, no pass owed).
    ///
    /// `data_dir` keeps the quarantine list ([`QUARANTINE_FILE`]) across restarts: the
    /// mailboxes it names stay unserved until a pass decides again, even if the master cannot
    /// be reached at start-up.
    pub fn new(link: MupdateLink, store: Arc<MailStore>, data_dir: &Path) -> MurderBackend {
        let file = data_dir.join(QUARANTINE_FILE);
        let quarantine = load_quarantine(&file);
        MurderBackend {
            link,
            store,
            quarantine: Mutex::new(quarantine),
            quarantine_file: file,
            ops: RwLock::new(()),
            pending: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The link.
    pub fn link(&self) -> &MupdateLink {
        &self.link
    }

    /// Whether `user`'s mailbox `name` is quarantined (held here, recorded elsewhere).
    pub fn is_quarantined(&self, user: &str, name: &str) -> bool {
        self.quarantine
            .lock()
            .is_ok_and(|q| q.contains(&(user.to_string(), name.to_string())))
    }

    fn set_quarantined(&self, user: &str, name: &str, on: bool) {
        if let Ok(mut q) = self.quarantine.lock() {
            let key = (user.to_string(), name.to_string());
            if on {
                q.insert(key);
            } else {
                q.remove(&key);
            }
        }
    }

    /// Owe a reconcile pass and wake the reconciler.
    pub fn request_reconcile(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.link.status.send_modify(|s| s.pending = true);
        self.wake.notify_one();
    }

    /// A connection on which `name` was RESERVEd at our location; a refusal is `refused` with
    /// the master's text, a lost answer also owes a reconcile (the RESERVE may have committed).
    async fn connect_and_reserve(
        &self,
        name: &str,
        refused: &str,
    ) -> Result<MupdateConnection, String> {
        let mut conn = self.link.connect().await.map_err(|e| unavailable(&e))?;
        match conn.reserve(name).await {
            Ok(()) => Ok(conn),
            Err(MupdateError::Refused(r)) => {
                conn.logout().await;
                Err(format!("{refused} ({r})"))
            }
            Err(e) => {
                self.request_reconcile();
                Err(unavailable(&e))
            }
        }
    }

    /// CREATE in backend mode (see the module docs).
    pub async fn create(&self, user: &str, name: &str) -> Result<(), String> {
        let _op = self.ops.read().await;
        let mname = mupdate_name(user, name);
        let mut conn = self
            .connect_and_reserve(&mname, "Mailbox reserved elsewhere")
            .await?;
        let (store, u, n) = (self.store.clone(), user.to_string(), name.to_string());
        if let Err(e) = blocking(move || store.create(&u, &n)).await {
            if let Err(d) = conn.delete(mname.as_bytes()).await {
                tracing::warn!("cannot release reservation of {mname}: {d}");
                self.request_reconcile();
            }
            return Err(e);
        }
        match conn.activate(&mname, &owner_acl(user)).await {
            Ok(()) => conn.logout().await,
            Err(e) => {
                // The reservation at our location keeps the name ours; the reconcile
                // ACTIVATEs it (the model's behaviour after a lost ACTIVATE).
                tracing::warn!("ACTIVATE of {mname} failed ({e}); a reconcile will finish it");
                self.request_reconcile();
            }
        }
        Ok(())
    }

    /// DELETE in backend mode: the master's record first, then the local mailbox.
    pub async fn delete(&self, user: &str, name: &str) -> Result<(), String> {
        let _op = self.ops.read().await;
        if self.is_quarantined(user, name) {
            return Err(QUARANTINED.into());
        }
        let mname = mupdate_name(user, name);
        let mut conn = self.link.connect().await.map_err(|e| unavailable(&e))?;
        let found = conn.find(&mname).await;
        match found {
            Err(e) => {
                self.request_reconcile();
                return Err(unavailable(&e));
            }
            Ok(Some(r)) if !self.link.is_ours(r.entry.location()) => {
                tracing::warn!(
                    "{user}/{name}: the master records it at {}; quarantined",
                    String::from_utf8_lossy(r.entry.location())
                );
                self.set_quarantined(user, name, true);
                conn.logout().await;
                return Err(QUARANTINED.into());
            }
            Ok(Some(_)) => match conn.delete(mname.as_bytes()).await {
                Ok(()) | Err(MupdateError::Refused(_)) => conn.logout().await,
                Err(e) => {
                    self.request_reconcile();
                    return Err(unavailable(&e));
                }
            },
            Ok(None) => conn.logout().await,
        }
        let (store, u, n) = (self.store.clone(), user.to_string(), name.to_string());
        blocking(move || store.delete(&u, &n))
            .await
            .inspect_err(|_| {
                // The record is gone but the mailbox stays: the reconcile registers it again.
                self.request_reconcile();
            })
    }

    /// RENAME in backend mode: RESERVE the new name, local rename, ACTIVATE new, DELETE old.
    pub async fn rename(&self, user: &str, from: &str, to: &str) -> Result<(), String> {
        let _op = self.ops.read().await;
        let (old, new) = (mupdate_name(user, from), mupdate_name(user, to));
        let mut conn = self
            .connect_and_reserve(&new, "Cannot reserve the new name")
            .await?;
        let (store, u, f, t) = (
            self.store.clone(),
            user.to_string(),
            from.to_string(),
            to.to_string(),
        );
        if let Err(e) = blocking(move || store.rename(&u, &f, &t)).await {
            if conn.delete(new.as_bytes()).await.is_err() {
                self.request_reconcile();
            }
            return Err(format!("RENAME failed: {e}"));
        }
        let done = match conn.activate(&new, &owner_acl(user)).await {
            Ok(()) => conn.delete(old.as_bytes()).await,
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => conn.logout().await,
            Err(e) => {
                tracing::warn!("MUPDATE update after RENAME failed ({e}); a reconcile follows");
                self.request_reconcile();
            }
        }
        Ok(())
    }

    /// One reconcile pass (see the module docs); publishes its outcome.
    pub async fn reconcile(&self) -> Result<ReconcileReport, MupdateError> {
        let _all = self.ops.write().await;
        let result = self.pass().await;
        let failed = result.is_err();
        self.pending.store(failed, Ordering::SeqCst);
        self.link.status.send_modify(|s| {
            s.pending = failed;
            match &result {
                Ok(r) => {
                    s.passes += 1;
                    s.last = Some(r.clone());
                    s.last_error = None;
                }
                Err(e) => {
                    s.failures += 1;
                    s.last_error = Some(e.to_string());
                }
            }
        });
        match &result {
            Ok(r) => tracing::info!(
                "MUPDATE reconcile: {} activated, {} registered, {} stale deleted, {} \
                 quarantined, {} unchanged",
                r.activated.len(),
                r.registered.len(),
                r.deleted.len(),
                r.quarantined.len(),
                r.unchanged
            ),
            Err(e) => tracing::warn!("MUPDATE reconcile failed, will retry: {e}"),
        }
        result
    }

    async fn pass(&self) -> Result<ReconcileReport, MupdateError> {
        // MUPDATE name → (user, mailbox) of every held mailbox.
        let held: BTreeMap<Vec<u8>, (String, String)> = self
            .store
            .all_mailboxes()
            .into_iter()
            .map(|(u, n)| (mupdate_name(&u, &n).into_bytes(), (u, n)))
            .collect();
        let mut conn = self.link.connect().await?;
        let prefix = format!("{}!", self.link.server_name);
        let listed = conn.list(Some(&prefix)).await?;
        let mut report = ReconcileReport::default();
        let mut quarantine = BTreeSet::new();
        let location = self.link.location();
        let user_of = |name: &[u8]| held.get(name).map(|(u, _)| u.clone()).unwrap_or_default();

        // Rules 1 and 4 for the records at our location.
        let mut seen = BTreeSet::new();
        let mut activate = Vec::new();
        let mut delete = Vec::new();
        for record in listed {
            if !self.link.is_ours(record.entry.location()) {
                continue;
            }
            match held.get(&record.name) {
                Some((user, _)) => {
                    seen.insert(record.name.clone());
                    if is_active_at(&record, &location, &owner_acl(user)) {
                        report.unchanged += 1;
                    } else {
                        activate.push(lossy(&record.name));
                    }
                }
                None => delete.push(record.name),
            }
        }
        let cmds: Vec<MupdateCommand> = delete
            .iter()
            .map(|n| MupdateCommand::Delete(n.clone()))
            .collect();
        // A refused DELETE means the record is gone already.
        conn.batch(&cmds).await?;
        report.deleted = delete.iter().map(|n| lossy(n)).collect();

        // Rules 2 and 3 for held mailboxes not listed: FIND each.
        let unlisted: Vec<(String, &(String, String))> = held
            .iter()
            .filter(|(n, _)| !seen.contains(*n))
            .map(|(n, um)| (lossy(n), um))
            .collect();
        let finds: Vec<MupdateCommand> = unlisted
            .iter()
            .map(|(n, _)| MupdateCommand::Find(n.clone()))
            .collect();
        let found = conn.batch(&finds).await?;
        let mut reserve = Vec::new();
        for ((name, (user, mailbox)), answer) in unlisted.iter().zip(found) {
            let record = answer
                .map_err(MupdateError::Refused)?
                .into_iter()
                .find(|r| r.name == name.as_bytes());
            match record {
                // Recorded here although LIST did not say so (a master whose LIST ignores the
                // prefix argument, or a record written since by another client): rule 1.
                Some(r) if self.link.is_ours(r.entry.location()) => {
                    if is_active_at(&r, &location, &owner_acl(user)) {
                        report.unchanged += 1;
                    } else {
                        activate.push(name.clone());
                    }
                }
                Some(r) => {
                    tracing::warn!(
                        "{user}/{mailbox} ({name}): the master records it at {}; quarantined \
                         (local copy kept, not served)",
                        String::from_utf8_lossy(r.entry.location())
                    );
                    quarantine.insert((user.clone(), mailbox.clone()));
                    report.quarantined.push(name.clone());
                }
                None => reserve.push((name.clone(), (user.clone(), mailbox.clone()))),
            }
        }
        let cmds: Vec<MupdateCommand> = reserve
            .iter()
            .map(|(n, _)| MupdateCommand::Reserve(n.clone()))
            .collect();
        let granted = conn.batch(&cmds).await?;
        let mut register = Vec::new();
        for ((name, (user, mailbox)), answer) in reserve.into_iter().zip(granted) {
            match answer {
                Ok(_) => register.push(name),
                Err(r) => {
                    tracing::warn!("{user}/{mailbox} ({name}): RESERVE refused ({r}); quarantined");
                    quarantine.insert((user, mailbox));
                    report.quarantined.push(name);
                }
            }
        }

        // ACTIVATE: rule 1's names and rule 3's granted reservations.
        let cmds: Vec<MupdateCommand> = activate
            .iter()
            .chain(&register)
            .map(|n| MupdateCommand::Activate {
                name: n.clone(),
                acl: owner_acl(&user_of(n.as_bytes())),
            })
            .collect();
        for answer in conn.batch(&cmds).await? {
            answer.map_err(MupdateError::Refused)?;
        }
        report.activated = activate;
        report.registered = register;
        conn.logout().await;
        let changed = self.quarantine.lock().map(|mut q| {
            let changed = *q != quarantine;
            *q = quarantine.clone();
            changed
        });
        if changed.unwrap_or(true)
            && let Err(e) = save_quarantine(&self.quarantine_file, &quarantine)
        {
            tracing::warn!("cannot write {}: {e}", self.quarantine_file.display());
        }
        Ok(report)
    }
}

/// File in the data directory listing the quarantined mailboxes, one `user<TAB>mailbox` line
/// each (`%`, TAB, CR and LF written as `%25`, `%09`, `%0D`, `%0A`).
pub const QUARANTINE_FILE: &str = "mupdate-quarantine";

fn escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\t', "%09")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn unescape(s: &str) -> String {
    s.replace("%09", "\t")
        .replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

/// The saved quarantine list (empty when missing or unreadable).
fn load_quarantine(file: &Path) -> BTreeSet<(String, String)> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return BTreeSet::new();
    };
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(u, m)| (unescape(u), unescape(m)))
        .collect()
}

/// Replace the saved list atomically (write, fsync, rename).
fn save_quarantine(file: &Path, q: &BTreeSet<(String, String)>) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = file.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    for (u, m) in q {
        writeln!(f, "{}\t{}", escape(u), escape(m))?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The reconciler task: a pass when one is owed (every [`MupdateLink::retry_interval`], or at
/// once when an operation asks), and every [`MupdateLink::reconcile_interval`] anyway. Ends
/// when the server (the last strong reference to `backend`) is gone.
pub async fn run_reconciler(backend: Weak<MurderBackend>) {
    let Some((wake, retry, every)) = backend.upgrade().map(|b| {
        (
            b.wake.clone(),
            b.link.retry_interval,
            b.link.reconcile_interval,
        )
    }) else {
        return;
    };
    loop {
        let pending = match backend.upgrade() {
            Some(b) => b.pending.load(Ordering::SeqCst),
            None => return,
        };
        let wait = if pending { retry } else { every };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(b) = backend.upgrade() else { return };
        let _ = b.reconcile().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_file_round_trips_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(QUARANTINE_FILE);
        assert!(load_quarantine(&file).is_empty());
        let q: BTreeSet<(String, String)> = [
            ("alice".to_string(), "a/b".to_string()),
            (
                "bob".to_string(),
                "tab\there%09 and\r\nnewline %".to_string(),
            ),
        ]
        .into_iter()
        .collect();
        save_quarantine(&file, &q).unwrap();
        assert_eq!(load_quarantine(&file), q);
        save_quarantine(&file, &BTreeSet::new()).unwrap();
        assert!(load_quarantine(&file).is_empty());
    }
}
