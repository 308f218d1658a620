//! APPEND with one or many messages (RFC 3502), streamed to staging files.
//!
//! While the command's literals total at most the store's `inline_segment_limit` (default
//! 256 KiB) they are buffered in memory and committed inside the index transaction (one fsync);
//! a literal that would go past it moves the buffer to a staging file and streams from the
//! socket buffer into it, so memory stays bounded whatever the message size. The messages are
//! committed by one [`MailStore::append`] after the command's last literal: all or nothing.
//! Faults are classified with the oracle's [`MessageFault`]; a refused command keeps the stream
//! in sync through [`Session::skip_command`].
//!
//! [`MailStore::append`]: crate::imap::mailstore::MailStore::append

use bytes::Bytes;
use murder_model::multiappend::{MessageFault, uid_set};

use super::{End, Flow, Res, Session};
use crate::imap::codec::command::{AppendHeadError, parse_append_message};
use crate::imap::codec::datetime::InternalDate;
use crate::imap::codec::framer::{Frame, LiteralSpec};
use crate::imap::codec::parser::{Cursor, Piece};
use crate::imap::faults::Fault;
use crate::imap::mailstore::{StagedAppend, StagedPart, StagedSegment, StagingWriter, StoreError};

/// The staging segment of one APPEND; removed on drop unless committed.
struct Staging {
    /// The segment file, once a literal would take the command past the store's
    /// `inline_segment_limit` (the bytes buffered so far are moved into it).
    file: Option<(std::path::PathBuf, StagingWriter)>,
    /// The literals while the command stays within the inline limit.
    mem: Vec<u8>,
    parts: Vec<StagedPart>,
    len: u64,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some((path, _)) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// System flags APPEND may set (`\Recent` may not be set by clients).
const SETTABLE: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// Canonical spelling of an acceptable flag, or None.
fn settable_flag(f: &str) -> Option<String> {
    if f.starts_with('\\') {
        SETTABLE
            .iter()
            .find(|s| s.eq_ignore_ascii_case(f))
            .map(|s| s.to_string())
    } else {
        Some(f.to_string())
    }
}

fn fault_answer(fault: MessageFault, detail: &str) -> (&'static str, String) {
    match fault {
        MessageFault::ZeroLength => (
            "NO",
            "Zero-length message literal refused; APPEND cancelled (RFC 3502)".into(),
        ),
        MessageFault::TooLarge => ("NO", format!("[TOOBIG] {detail}")),
        MessageFault::BadFlag => ("NO", format!("Invalid flag: {detail}")),
        MessageFault::BadDateTime => ("BAD", format!("Invalid date-time: {detail}")),
        MessageFault::Aborted => ("BAD", detail.to_string()),
    }
}

impl Session {
    /// `tag APPEND` + `rest` (starting at the SP after APPEND) + literal announcement.
    pub(super) async fn append(
        &mut self,
        tag: String,
        rest: Bytes,
        literal: Option<LiteralSpec>,
    ) -> Res<Flow> {
        if self.user.is_none() {
            return self
                .refuse(&tag, "BAD", "APPEND requires authentication", literal)
                .await;
        }
        // The mailbox: an astring in the line, or a literal of its own.
        let mut pieces = vec![Piece::Text(rest.clone())];
        let mut lit = literal;
        if rest.as_ref() == b" "
            && let Some(spec) = lit
        {
            if spec.len > self.shared.limits.max_command_literal {
                return self
                    .refuse(&tag, "BAD", "Mailbox name literal too large", lit)
                    .await;
            }
            lit = self.read_small_literal(spec, &mut pieces).await?;
        }
        let mut c = Cursor::new(&pieces);
        let mailbox = match c.sp().and_then(|()| c.mailbox()) {
            Ok(m) => m,
            Err(e) => return self.refuse(&tag, "BAD", &format!("APPEND: {e}"), lit).await,
        };
        let head_text = Bytes::copy_from_slice(c.rest());
        let Some(first_spec) = lit else {
            self.tagged(&tag, "BAD", "APPEND: expected a message literal");
            return Ok(Flow::Continue);
        };
        let user = self.user();
        let store = self.shared.store.clone();
        if self.quarantined(&user, &mailbox) {
            let text = crate::imap::reconcile::QUARANTINED;
            return self.refuse(&tag, "NO", text, lit).await;
        }
        if !store.exists(&user, &mailbox) && !self.shared.faults.has(Fault::AutoCreateMailbox) {
            let text = if self.shared.faults.has(Fault::NoTryCreate) {
                "Mailbox does not exist"
            } else {
                "[TRYCREATE] Mailbox does not exist"
            };
            return self.refuse(&tag, "NO", text, lit).await;
        }

        let mut staging = Staging {
            file: None,
            mem: Vec::new(),
            parts: Vec::new(),
            len: 0,
        };
        let mut head_text = head_text;
        let mut spec = first_spec;
        loop {
            // Validate the message arguments before accepting its literal.
            let fault = match parse_append_message(&head_text) {
                Err(AppendHeadError::Syntax(e)) => {
                    Some((MessageFault::Aborted, format!("APPEND: {e}")))
                }
                Err(AppendHeadError::BadDateTime)
                    if self.shared.faults.has(Fault::LaterBadDateAccepted)
                        && !staging.parts.is_empty() =>
                {
                    self.receive_message(&mut staging, spec, Vec::new(), InternalDate::now())
                        .await?;
                    None
                }
                Err(AppendHeadError::BadDateTime) => Some((
                    MessageFault::BadDateTime,
                    String::from_utf8_lossy(&head_text).trim().to_string(),
                )),
                Ok(head) => {
                    let flags: Option<Vec<String>> =
                        head.flags.iter().map(|f| settable_flag(f)).collect();
                    if let Some(bad) = head.flags.iter().find(|f| settable_flag(f).is_none()) {
                        Some((MessageFault::BadFlag, bad.clone()))
                    } else if spec.len == 0
                        && !self.shared.faults.has(Fault::ZeroLengthAccepted)
                        && (staging.parts.is_empty()
                            || !self.shared.faults.has(Fault::ZeroLengthLaterAccepted))
                    {
                        Some((MessageFault::ZeroLength, String::new()))
                    } else if spec.len > self.shared.limits.max_message_size {
                        Some((
                            MessageFault::TooLarge,
                            format!(
                                "Message of {} octets exceeds the limit of {}",
                                spec.len, self.shared.limits.max_message_size
                            ),
                        ))
                    } else if staging.parts.len() >= self.shared.limits.max_messages_per_append {
                        Some((
                            MessageFault::TooLarge,
                            format!(
                                "More than {} messages in one APPEND",
                                self.shared.limits.max_messages_per_append
                            ),
                        ))
                    } else {
                        let faults = &self.shared.faults;
                        let date = match head.date {
                            Some(_)
                                if faults.has(Fault::LaterDatesIgnored)
                                    && !staging.parts.is_empty() =>
                            {
                                InternalDate::now()
                            }
                            Some(d) if faults.has(Fault::DateZoneIgnored) => InternalDate {
                                unix: d.unix + i64::from(d.zone_minutes) * 60,
                                zone_minutes: 0,
                            },
                            Some(d) => d,
                            None => InternalDate::now(),
                        };
                        let flags = match staging.parts.first() {
                            Some(first) if faults.has(Fault::FirstFlagsForAll) => {
                                first.flags.clone()
                            }
                            _ => flags.unwrap_or_default(),
                        };
                        let received = self.receive_message(&mut staging, spec, flags, date).await;
                        if let Err(e) = received {
                            let complete = staging.parts.len().saturating_sub(1);
                            self.commit_partial(&mailbox, staging, complete).await;
                            return Err(e);
                        }
                        None
                    }
                }
            };
            if let Some((fault, detail)) = fault {
                drop(staging);
                let (status, mut text) = fault_answer(fault, &detail);
                if fault == MessageFault::BadFlag
                    && self.shared.faults.has(Fault::TryCreateOnBadFlag)
                {
                    text = format!("[TRYCREATE] {text}");
                }
                return self.refuse(&tag, status, &text, Some(spec)).await;
            }
            let (text, next) = match self.next_line().await {
                Ok(line) => line,
                Err(e) => {
                    let complete = staging.parts.len();
                    self.commit_partial(&mailbox, staging, complete).await;
                    return Err(e);
                }
            };
            match next {
                Some(s) => {
                    head_text = text;
                    spec = s;
                }
                None if text.is_empty() => break,
                None => {
                    self.tagged(
                        &tag,
                        "BAD",
                        "APPEND: unexpected text after a message literal",
                    );
                    return Ok(Flow::Continue);
                }
            }
        }
        self.commit_append(&tag, &mailbox, staging).await
    }

    /// The `AppendCommitsOnDisconnect` fault (a no-op without it): the client went away in the
    /// middle of the command; commit the first `complete` messages anyway.
    async fn commit_partial(&self, mailbox: &str, mut staging: Staging, complete: usize) {
        if !self.shared.faults.has(Fault::AppendCommitsOnDisconnect) || complete == 0 {
            return;
        }
        staging.parts.truncate(complete);
        let mut cleanup = RemoveOnDrop(None);
        let segment = match staging.file.take() {
            Some((path, file)) => {
                cleanup = RemoveOnDrop(Some(path.clone()));
                if file.finish().await.is_err() {
                    return;
                }
                StagedSegment::File(path)
            }
            None => {
                let end = staging.parts.last().map_or(0, |p| p.offset + p.size);
                let mut bytes = std::mem::take(&mut staging.mem);
                bytes.truncate(usize::try_from(end).unwrap_or(usize::MAX));
                StagedSegment::Inline(bytes)
            }
        };
        let staged = StagedAppend {
            segment,
            parts: std::mem::take(&mut staging.parts),
        };
        let _ = self.shared.store.append(&self.user(), mailbox, &staged);
        drop(cleanup);
    }

    /// Accept one literal and stream it onto the end of the staging segment.
    async fn receive_message(
        &mut self,
        staging: &mut Staging,
        spec: LiteralSpec,
        flags: Vec<String>,
        date: InternalDate,
    ) -> Res<()> {
        let inline_limit = self.shared.store.inline_segment_limit();
        if staging.file.is_none() && staging.len.saturating_add(spec.len) > inline_limit {
            // Too big to commit inline: spill to a staging file and stream from here on.
            let (path, file) = self.shared.store.create_staging().await?;
            let buffered = std::mem::take(&mut staging.mem);
            let (_, file) = staging.file.insert((path, file));
            file.write(&buffered).await?;
        }
        staging.parts.push(StagedPart {
            offset: staging.len,
            size: spec.len,
            flags,
            date,
        });
        staging.len += spec.len;
        if staging.file.is_none() {
            // Within the inline limit (checked above): one allocation per literal, not a
            // doubling series (less heap churn and fragmentation under MULTIAPPEND load).
            staging.mem.reserve(usize::try_from(spec.len).unwrap_or(0));
        }
        if spec.sync {
            self.framer.accept_literal();
            if !self.shared.faults.has(Fault::SyncLiteralNoContinuation) {
                self.push_line("+ Ready for literal data");
            }
            self.flush().await?;
        }
        loop {
            match self.next_frame(false).await? {
                Frame::LiteralData(b) => match staging.file.as_mut() {
                    Some((_, file)) => file.write(&b).await?,
                    None => staging.mem.extend_from_slice(&b),
                },
                Frame::LiteralEnd => return Ok(()),
                Frame::Line { .. } => {
                    self.push_line("* BYE internal framing error");
                    return Err(End::Closed);
                }
            }
        }
    }

    async fn commit_append(&mut self, tag: &str, mailbox: &str, mut staging: Staging) -> Res<Flow> {
        if staging.parts.is_empty() {
            self.tagged(tag, "BAD", "APPEND: expected a message literal");
            return Ok(Flow::Continue);
        }
        let parts = std::mem::take(&mut staging.parts);
        // From here the segment's removal on failure is `cleanup`'s job.
        let (staged, cleanup) = match staging.file.take() {
            // Small command: committed inside the index transaction, no file of its own.
            None => (
                StagedAppend {
                    segment: StagedSegment::Inline(std::mem::take(&mut staging.mem)),
                    parts,
                },
                RemoveOnDrop(None),
            ),
            Some((path, file)) => {
                let cleanup = RemoveOnDrop(Some(path.clone()));
                // One fsync for the whole command's segment.
                if let Err(e) = file.finish().await {
                    self.tagged(tag, "NO", &format!("APPEND failed: {e}"));
                    return Ok(Flow::Continue);
                }
                let segment = StagedSegment::File(path);
                (StagedAppend { segment, parts }, cleanup)
            }
        };
        let store = self.shared.store.clone();
        let (user, name) = (self.user(), mailbox.to_string());
        let result = tokio::task::spawn_blocking(move || store.append(&user, &name, &staged)).await;
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                self.tagged(tag, "NO", &format!("APPEND failed: {e}"));
                return Ok(Flow::Continue);
            }
        };
        match result {
            Ok(done) => {
                // Committed: the segment was renamed into the mailbox.
                cleanup.disarm();
                if self.selected.as_ref().is_some_and(|s| s.name == mailbox)
                    && !self.shared.faults.has(Fault::ExistsAfterAppendOk)
                {
                    self.sync_selected_inner(true, true);
                }
                let faults = &self.shared.faults;
                let mut uids: Vec<u32> = if faults.has(Fault::AppendUidOffByOne) {
                    done.uids.iter().map(|u| u.saturating_add(1)).collect()
                } else {
                    done.uids
                };
                let mut uid_validity = done.uid_validity;
                if faults.has(Fault::AppendUidValidityWrong) {
                    uid_validity = uid_validity.saturating_add(1);
                }
                let uid_text = if faults.has(Fault::AppendUidDescending) && uids.len() > 1 {
                    uids.reverse();
                    let list: Vec<String> = uids.iter().map(u32::to_string).collect();
                    list.join(",")
                } else {
                    uid_set(&uids)
                };
                self.tagged(
                    tag,
                    "OK",
                    &format!("[APPENDUID {uid_validity} {uid_text}] APPEND completed"),
                );
            }
            Err(StoreError::NoMailbox) if !self.shared.faults.has(Fault::NoTryCreate) => {
                self.tagged(tag, "NO", "[TRYCREATE] Mailbox does not exist")
            }
            Err(e) => self.tagged(tag, "NO", &format!("APPEND failed: {e}")),
        }
        Ok(Flow::Continue)
    }
}

/// Removes a staging file when dropped, unless disarmed (after a successful commit).
struct RemoveOnDrop(Option<std::path::PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}
