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
}

impl Fault {
    /// Every fault, for `--help` and tests.
    pub const ALL: [Fault; 9] = [
        Fault::AppendNotAtomic,
        Fault::AppendUidOffByOne,
        Fault::NoTryCreate,
        Fault::AutoCreateMailbox,
        Fault::ZeroLengthAccepted,
        Fault::ExecutePipelinedAfterRejectedAppend,
        Fault::NoExistsToOtherSessions,
        Fault::StarttlsExecutesPipelined,
        Fault::LiteralPlusNotConsumed,
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
