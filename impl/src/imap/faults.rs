//! Fault switches: deliberate protocol violations the conformance suite must detect.
//!
//! They exist to prove that the suite can fail (mutant tests). The default set is empty; the
//! `imapd --fault NAME` flag exists only when the crate is built with the `faults` feature, but
//! in-process users (the conformance runner's tests) can always set [`Config::faults`].
//!
//! [`Config::faults`]: crate::imap::Config::faults

use std::collections::BTreeSet;
use std::str::FromStr;

/// One deliberate deviation from the RFCs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// MULTIAPPEND messages become visible one by one (observers see EXISTS N+1, N+2, ...).
    AppendNotAtomic,
    /// APPENDUID reports every UID one too high.
    AppendUidOffByOne,
    /// A missing mailbox is answered with a plain NO, without `[TRYCREATE]`.
    NoTryCreate,
    /// APPEND to a missing mailbox creates it.
    AutoCreateMailbox,
    /// A zero-length message literal is stored instead of refused.
    ZeroLengthAccepted,
    /// After an APPEND is rejected, the rest of its `{n+}` literals is read as commands.
    ExecutePipelinedAfterRejectedAppend,
    /// Other sessions with the mailbox selected are not told about new messages.
    NoExistsToOtherSessions,
    /// Plaintext bytes pipelined after STARTTLS are executed after the handshake.
    StarttlsExecutesPipelined,
    /// An over-limit `{n+}` literal is refused without consuming its bytes or closing.
    LiteralPlusNotConsumed,
    // --- Mutants added by the `mutants` task (issues 5 and 9). ---
    /// APPENDUID reports a UIDVALIDITY one too high (RFC 4315 3).
    AppendUidValidityWrong,
    /// APPENDUID lists the UIDs of a MULTIAPPEND in descending order (RFC 4315 3: in the order
    /// the messages were transmitted).
    AppendUidDescending,
    /// Every message of a MULTIAPPEND gets the flags of the first one (RFC 3502 6.3.11).
    FirstFlagsForAll,
    /// The date-time of messages k > 1 is ignored (the current time is stored instead).
    LaterDatesIgnored,
    /// A NO for an invalid flag carries `[TRYCREATE]` (RFC 3501 7.1: only for a missing
    /// mailbox).
    TryCreateOnBadFlag,
    /// An invalid date-time of message k > 1 is accepted (RFC 3502 6.3.11: the whole APPEND
    /// fails).
    LaterBadDateAccepted,
    /// A zero-length literal is refused only as the first message (RFC 3502 6.3.11).
    ZeroLengthLaterAccepted,
    /// EXISTS reports the number of new messages, not the mailbox size (RFC 3501 7.3.1).
    ExistsCountsNewOnly,
    /// STATUS UIDNEXT is computed as the highest UID + 1, so it goes down after an EXPUNGE
    /// (RFC 3501 2.3.1.1: UIDs are never reused; UIDNEXT changes only when messages arrive).
    StatusUidNextFromMaxUid,
    /// Synchronizing message literals are read without a `+` continuation (RFC 3501 7.5).
    SyncLiteralNoContinuation,
    /// When the client disconnects in the middle of a MULTIAPPEND, the messages received in full
    /// are committed (RFC 3502: all or none).
    AppendCommitsOnDisconnect,
    /// UIDVALIDITY is the creation time in seconds, without the "greater than the last one"
    /// guard: a mailbox deleted and created again within a second reuses it, so (UIDVALIDITY,
    /// UID) names two different messages (RFC 3501 2.3.1.1).
    UidValidityFromClock,
    /// Sessions that selected the mailbox read-only (EXAMINE) are not told about new messages
    /// (RFC 3501 5.2: size updates go to every session with the mailbox selected).
    NoExistsToReadOnly,
    /// SASL PLAIN lets any user act as any authzid: user2's password logs in as the main user
    /// (RFC 4616 2: the credentials must permit acting as the authzid).
    PlainAuthzidUnchecked,
    /// After refusing a command that announced a synchronizing literal (no `+` sent, so the
    /// client sends no literal), the server still swallows that many octets of what follows
    /// (RFC 3501 4.3/7.5: without the continuation the literal was never sent).
    RefusedSyncLiteralSkipped,
    /// The appending session with the mailbox selected gets the EXISTS only with its next
    /// command, not before the APPEND's OK (RFC 3502 6.3.11: "SHOULD notify the client
    /// immediately").
    ExistsAfterAppendOk,
    /// The zone of an APPEND date-time is dropped: its wall-clock time is stored as +0000, a
    /// different instant (RFC 3502 6.3.11: the internal date SHOULD be set to the date-time).
    DateZoneIgnored,
}

impl Fault {
    /// Every fault, for `--help` and tests.
    pub const ALL: [Fault; 26] = [
        Fault::AppendNotAtomic,
        Fault::AppendUidOffByOne,
        Fault::NoTryCreate,
        Fault::AutoCreateMailbox,
        Fault::ZeroLengthAccepted,
        Fault::ExecutePipelinedAfterRejectedAppend,
        Fault::NoExistsToOtherSessions,
        Fault::StarttlsExecutesPipelined,
        Fault::LiteralPlusNotConsumed,
        Fault::AppendUidValidityWrong,
        Fault::AppendUidDescending,
        Fault::FirstFlagsForAll,
        Fault::LaterDatesIgnored,
        Fault::TryCreateOnBadFlag,
        Fault::LaterBadDateAccepted,
        Fault::ZeroLengthLaterAccepted,
        Fault::ExistsCountsNewOnly,
        Fault::StatusUidNextFromMaxUid,
        Fault::SyncLiteralNoContinuation,
        Fault::AppendCommitsOnDisconnect,
        Fault::UidValidityFromClock,
        Fault::NoExistsToReadOnly,
        Fault::PlainAuthzidUnchecked,
        Fault::RefusedSyncLiteralSkipped,
        Fault::ExistsAfterAppendOk,
        Fault::DateZoneIgnored,
    ];
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|f| format!("{f:?}").eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown fault {s:?}; known: {:?}", Fault::ALL))
    }
}

/// The set of active faults (empty by default: a correct server).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults(pub BTreeSet<Fault>);

impl Faults {
    /// Whether `f` is active.
    pub fn has(&self, f: Fault) -> bool {
        self.0.contains(&f)
    }

    /// A set with exactly `f`.
    pub fn only(f: Fault) -> Faults {
        Faults(BTreeSet::from([f]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        for f in Fault::ALL {
            assert_eq!(format!("{f:?}").parse::<Fault>(), Ok(f));
        }
        assert!("nope".parse::<Fault>().is_err());
        assert!(Faults::default().0.is_empty());
    }
}

/// A test hook making the mail store's commits fail as if the disk were full (the imapd
/// counterpart of the MUPDATE store's `FaultInjector`). Clones share one switch; off at first.
#[derive(Clone, Debug, Default)]
pub struct DiskFault(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl DiskFault {
    /// A switch that starts off (the disk works).
    pub fn new() -> DiskFault {
        DiskFault::default()
    }

    /// Turn the failure on (`true`: the disk is "full") or off.
    pub fn set_full(&self, full: bool) {
        self.0.store(full, std::sync::atomic::Ordering::SeqCst);
    }

    /// `Err(StorageFull)` while the switch is on.
    pub fn check(&self) -> std::io::Result<()> {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "injected fault: no space left on device",
            ))
        } else {
            Ok(())
        }
    }
}
