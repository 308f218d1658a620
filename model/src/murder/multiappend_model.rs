//! A stateright model of MULTIAPPEND (RFC 3502 + UIDPLUS) under concurrency and crashes.
//!
//! `sessions` sessions each send `batches` MULTIAPPENDs of `batch_size` messages to one mailbox
//! while an observer session polls (NOOP → EXISTS) and may EXPUNGE the newest message once. The
//! server receives a batch literal by literal and commits it with the oracle,
//! [`MailStore::append`], in one step. A crash loses every batch in flight (its client sees the
//! connection drop and gives the batch up); the durable state is the committed messages and
//! UIDNEXT.
//!
//! Broken variants ([`AppendBugs`]): messages appended one by one as their literals arrive;
//! UIDNEXT not persisted (derived from the highest UID on restart); APPENDUID computed from
//! message sequence numbers.

use stateright::{Model, Property};

use crate::multiappend::{AppendMessage, AppendOutcome, MailStore, Mailbox};

/// The mailbox every session appends to.
pub const MAILBOX: &str = "INBOX";

/// Deliberately broken servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AppendBugs {
    /// Append each message as its literal arrives instead of the whole batch at the end.
    pub per_message: bool,
    /// On restart derive UIDNEXT from the highest remaining UID instead of persisting it.
    pub uidnext_not_persisted: bool,
    /// Report APPENDUID from sequence numbers (EXISTS-k+1..EXISTS) instead of the UIDs.
    pub appenduid_from_seqnums: bool,
}

/// The size of a MULTIAPPEND model instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AppendConfig {
    /// Appending sessions.
    pub sessions: u8,
    /// Batches per session.
    pub batches: u8,
    /// Messages per batch.
    pub batch_size: u8,
    /// Server crashes allowed.
    pub crashes: u8,
    /// The observer may EXPUNGE the newest message once.
    pub expunge: bool,
    /// Broken variants.
    pub bugs: AppendBugs,
}

impl AppendConfig {
    /// 2 sessions × 1 batch of 2, 1 crash, one expunge.
    pub fn small() -> Self {
        AppendConfig {
            sessions: 2,
            batches: 1,
            batch_size: 2,
            crashes: 1,
            expunge: true,
            bugs: AppendBugs::default(),
        }
    }
}

/// One appending session.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppendSession {
    /// Next batch to send.
    pub next_batch: u8,
    /// Literals of the current batch the server has read (None: idle).
    pub sending: Option<u8>,
    /// APPENDUID results: (batch, uids).
    pub results: Vec<(u8, Vec<u32>)>,
}

/// The whole system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AppendState {
    /// The server's mailbox (the oracle; durable).
    pub store: MailStore,
    /// The sessions.
    pub sessions: Vec<AppendSession>,
    /// The message contents the observer saw at its last poll.
    pub observed: Vec<u64>,
    /// Ghost: contents expunged.
    pub expunged: Vec<u64>,
    /// Ghost: every UID ever assigned, in order.
    pub assigned: Vec<u32>,
    /// Crashes so far.
    pub crashes: u8,
    /// The expunge has happened.
    pub expunge_done: bool,
}

/// What can happen next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AppendAction {
    /// Session `i` sends the command line and first literal of its next batch.
    Start(u8),
    /// The server reads session `i`'s next literal (and commits after the last one).
    Receive(u8),
    /// The observer polls.
    Observe,
    /// The observer expunges the newest message.
    Expunge,
    /// The server crashes and restarts.
    Crash,
}

/// The content fingerprint of message `m` of batch `b` of session `s`.
pub fn content(s: u8, b: u8, m: u8) -> u64 {
    u64::from(s) * 100 + u64::from(b) * 10 + u64::from(m)
}

fn message(s: u8, b: u8, m: u8) -> AppendMessage {
    AppendMessage {
        flags: Vec::new(),
        size: 10,
        content: content(s, b, m),
        fault: None,
    }
}

/// The model.
#[derive(Clone, Debug)]
pub struct AppendModel {
    /// Its size and variant.
    pub cfg: AppendConfig,
}

/// Always: the observer never saw part of a batch.
pub const OBSERVER_WHOLE_BATCHES: &str = "the observer never sees part of a batch";
/// Always: outside an append in progress, each batch is all there or not at all.
pub const STORE_WHOLE_BATCHES: &str = "each batch is all there or not at all";
/// Always: UIDs strictly ascend in the mailbox and none is ever assigned twice.
pub const UIDS_NEVER_REUSED: &str = "UIDs ascend and are never reused";
/// Always: APPENDUID names exactly the UIDs the messages got.
pub const APPENDUID_EXACT: &str = "APPENDUID equals the UIDs assigned";
/// Sometimes: a batch committed.
pub const SOME_COMMIT: &str = "sometimes a batch commits";
/// Sometimes: a crash happened.
pub const SOME_CRASH: &str = "sometimes the server crashes";
/// Sometimes: the observer saw two batches.
pub const SOME_TWO_BATCHES: &str = "sometimes the observer sees two batches";

impl AppendModel {
    fn mailbox<'a>(&self, s: &'a AppendState) -> Option<&'a Mailbox> {
        s.store.mailbox(MAILBOX)
    }

    /// True when `contents` holds every batch it touches whole (expunged messages excepted),
    /// ignoring the batches in `skip`.
    fn whole_batches(&self, s: &AppendState, contents: &[u64], skip: &[(u8, u8)]) -> bool {
        let n = self.cfg.batch_size;
        (0..self.cfg.sessions).all(|i| {
            (0..self.cfg.batches).all(|b| {
                if skip.contains(&(i, b)) {
                    return true;
                }
                let present = (0..n)
                    .filter(|&m| contents.contains(&content(i, b, m)))
                    .count();
                // Every message of a batch that shows at all is visible or was expunged.
                present == 0
                    || (0..n).all(|m| {
                        let c = content(i, b, m);
                        contents.contains(&c) || s.expunged.contains(&c)
                    })
            })
        })
    }
}

impl Model for AppendModel {
    type State = AppendState;
    type Action = AppendAction;

    fn init_states(&self) -> Vec<AppendState> {
        let mut store = MailStore::new();
        store.create(MAILBOX);
        vec![AppendState {
            store,
            sessions: vec![
                AppendSession {
                    next_batch: 0,
                    sending: None,
                    results: Vec::new(),
                };
                usize::from(self.cfg.sessions)
            ],
            observed: Vec::new(),
            expunged: Vec::new(),
            assigned: Vec::new(),
            crashes: 0,
            expunge_done: false,
        }]
    }

    fn actions(&self, s: &AppendState, actions: &mut Vec<AppendAction>) {
        for (i, x) in s.sessions.iter().enumerate() {
            let i = u8::try_from(i).unwrap_or(u8::MAX);
            match x.sending {
                None if x.next_batch < self.cfg.batches => actions.push(AppendAction::Start(i)),
                Some(_) => actions.push(AppendAction::Receive(i)),
                None => {}
            }
        }
        let visible: Vec<u64> = self
            .mailbox(s)
            .map(|m| m.messages.iter().map(|x| x.content).collect())
            .unwrap_or_default();
        if visible != s.observed {
            actions.push(AppendAction::Observe);
        }
        if self.cfg.expunge && !s.expunge_done && !visible.is_empty() {
            actions.push(AppendAction::Expunge);
        }
        if s.crashes < self.cfg.crashes {
            actions.push(AppendAction::Crash);
        }
    }

    fn next_state(&self, last: &AppendState, action: AppendAction) -> Option<AppendState> {
        let mut s = last.clone();
        let bugs = self.cfg.bugs;
        match action {
            AppendAction::Start(i) => {
                let x = s.sessions.get_mut(usize::from(i))?;
                x.sending = Some(0);
            }
            AppendAction::Receive(i) => {
                let x = s.sessions.get_mut(usize::from(i))?;
                let got = x.sending? + 1;
                let b = x.next_batch;
                if bugs.per_message {
                    // Broken: each literal is appended as it arrives.
                    if let AppendOutcome::Ok { uids, .. } =
                        s.store.append(MAILBOX, &[message(i, b, got - 1)])
                    {
                        s.assigned.extend(&uids);
                        let x = s.sessions.get_mut(usize::from(i))?;
                        match x.results.iter_mut().find(|(rb, _)| *rb == b) {
                            Some((_, v)) => v.extend(uids),
                            None => x.results.push((b, uids)),
                        }
                    }
                }
                let x = s.sessions.get_mut(usize::from(i))?;
                if got < self.cfg.batch_size {
                    x.sending = Some(got);
                    return Some(s);
                }
                x.sending = None;
                x.next_batch += 1;
                if !bugs.per_message {
                    let batch: Vec<AppendMessage> =
                        (0..self.cfg.batch_size).map(|m| message(i, b, m)).collect();
                    if let AppendOutcome::Ok { uids, .. } = s.store.append(MAILBOX, &batch) {
                        s.assigned.extend(&uids);
                        let reported = if bugs.appenduid_from_seqnums {
                            let exists = self.mailbox(&s).map_or(0, |m| m.messages.len());
                            let exists = u32::try_from(exists).unwrap_or(u32::MAX);
                            let k = u32::from(self.cfg.batch_size);
                            (exists + 1 - k..=exists).collect()
                        } else {
                            uids
                        };
                        s.sessions
                            .get_mut(usize::from(i))?
                            .results
                            .push((b, reported));
                    }
                }
            }
            AppendAction::Observe => {
                s.observed = self
                    .mailbox(&s)
                    .map(|m| m.messages.iter().map(|x| x.content).collect())
                    .unwrap_or_default();
            }
            AppendAction::Expunge => {
                let last_msg = self.mailbox(&s)?.messages.last()?.clone();
                s.store.expunge(MAILBOX, &[last_msg.uid]);
                s.expunged.push(last_msg.content);
                s.expunge_done = true;
            }
            AppendAction::Crash => {
                s.crashes += 1;
                for x in &mut s.sessions {
                    if x.sending.take().is_some() {
                        // The client saw the connection drop; the batch is given up.
                        x.next_batch += 1;
                    }
                }
                if bugs.uidnext_not_persisted {
                    let mut mb = self.mailbox(&s)?.clone();
                    mb.uid_next = mb.messages.last().map_or(1, |m| m.uid + 1);
                    s.store.restore(MAILBOX, mb);
                }
                s.observed.clear();
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                OBSERVER_WHOLE_BATCHES,
                |m: &AppendModel, s: &AppendState| m.whole_batches(s, &s.observed, &[]),
            ),
            Property::always(STORE_WHOLE_BATCHES, |m: &AppendModel, s: &AppendState| {
                let in_flight: Vec<(u8, u8)> = s
                    .sessions
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| x.sending.is_some())
                    .map(|(i, x)| (u8::try_from(i).unwrap_or(u8::MAX), x.next_batch))
                    .collect();
                let contents: Vec<u64> = m
                    .mailbox(s)
                    .map(|mb| mb.messages.iter().map(|x| x.content).collect())
                    .unwrap_or_default();
                m.whole_batches(s, &contents, &in_flight)
            }),
            Property::always(UIDS_NEVER_REUSED, |m: &AppendModel, s: &AppendState| {
                let ascending = m.mailbox(s).is_some_and(|mb| {
                    mb.messages
                        .windows(2)
                        .all(|w| matches!(w, [a, b] if a.uid < b.uid))
                });
                let mut sorted = s.assigned.clone();
                sorted.sort_unstable();
                sorted.dedup();
                ascending && sorted.len() == s.assigned.len()
            }),
            Property::always(APPENDUID_EXACT, |m: &AppendModel, s: &AppendState| {
                let Some(mb) = m.mailbox(s) else { return false };
                s.sessions.iter().enumerate().all(|(i, x)| {
                    let i = u8::try_from(i).unwrap_or(u8::MAX);
                    x.results.iter().all(|(b, uids)| {
                        (0..m.cfg.batch_size).all(|k| {
                            let c = content(i, *b, k);
                            let reported = uids.get(usize::from(k));
                            match mb.messages.iter().find(|x| x.content == c) {
                                Some(msg) => reported == Some(&msg.uid),
                                None => true,
                            }
                        })
                    })
                })
            }),
            Property::sometimes(SOME_COMMIT, |_: &AppendModel, s: &AppendState| {
                s.sessions.iter().any(|x| !x.results.is_empty())
            }),
            Property::sometimes(SOME_CRASH, |_: &AppendModel, s: &AppendState| s.crashes > 0),
            Property::sometimes(SOME_TWO_BATCHES, |m: &AppendModel, s: &AppendState| {
                let n = u64::from(m.cfg.batch_size);
                s.observed.len() as u64 >= 2 * n && m.whole_batches(s, &s.observed, &[])
            }),
        ]
    }
}
