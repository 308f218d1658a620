//! Fault switches: deliberate, localized protocol bugs the conformance suite must catch.
//!
//! Each [`Fault`] breaks exactly one rule at one spot of the server. They exist to prove that
//! the conformance suite can fail (a mutant test asserts that each one makes some scenario
//! fail). The default [`Faults`] set is empty; the `mupdated --fault NAME` flag exists only when
//! built with the cargo feature `faults`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use murder_model::mailbox_db::is_valid_name;
use murder_model::{Change, Command, MailboxEntry, Record, Reply};

use crate::store::{MupdateStore, StoreError};

/// How long the [`Fault::ReserveRace`] mutant waits between finding a name free and committing
/// its reservation: the window in which a concurrent RESERVE of the same name also finds it
/// free. Long against a loopback round trip, so a concurrent workload hits it practically always.
pub const RESERVE_RACE_WINDOW: Duration = Duration::from_millis(100);

/// One deliberate bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// RESERVE of an existing name answers OK (and changes nothing).
    ReserveAlwaysOk,
    /// DELETE of a missing name answers OK.
    DeleteMissingOk,
    /// NOOP on an UPDATE stream answers OK before sending the pending changes.
    NoNoopBarrier,
    /// The UPDATE stream sends only the latest state per name among the changes ready at once.
    CoalesceStream,
    /// Data lines (MAILBOX/RESERVE/DELETE) are sent untagged (`*`).
    UntaggedData,
    /// LOGOUT answers OK instead of BYE.
    LogoutOk,
    /// Commands before AUTHENTICATE are executed instead of refused.
    CommandsBeforeLogin,
    /// Input pipelined after STARTTLS is executed in plaintext instead of discarded.
    StarttlsExecutesPipelined,
    /// Synchronizing literals are read without sending `+ go ahead`.
    SyncLiteralNoContinuation,
    /// LIST ignores its location prefix.
    ListIgnoresPrefix,
    /// FIND reports a reserved name as MAILBOX.
    FindReturnsReserveAsMailbox,
    /// DEACTIVATE of a missing name answers OK.
    DeactivateMissingOk,
    /// DELETE changes are not sent to UPDATE streams.
    DropStreamDeletes,
    /// UPDATE is answered NO.
    UpdateRefused,
    /// RESERVE checks that the name is free, waits [`RESERVE_RACE_WINDOW`], then commits the
    /// reservation unconditionally: two concurrent RESERVEs of one free name can both get OK
    /// (sequential RESERVEs stay correct). Only concurrent clients can see it (`conformance
    /// stress`, race scenarios).
    ReserveRace,
    // --- Mutants added by the `mutants` task (issues 5 and 9). ---
    /// Mailbox names are folded to lower case, so names differing only in case collide
    /// (RFC 3656 4: names are opaque octet strings).
    NamesCaseInsensitive,
    /// DEACTIVATE removes the entry instead of demoting it to a reservation (RFC 3656 4.3).
    DeactivateDeletes,
    /// ACTIVATE of an existing active name keeps its old ACL (RFC 3656 4.1: the new ACL).
    ActivateKeepsAcl,
    /// The UPDATE initial dump leaves out reserved entries (RFC 3656 4.11: all of them).
    UpdateDumpOmitsReserved,
    /// A NOOP on an UPDATE stream re-tags the later stream lines with the NOOP's tag
    /// (RFC 3656 4.11: stream lines carry the UPDATE's tag).
    StreamTagFollowsNoop,
    /// Tags are echoed truncated to 10 octets, as from a fixed-size buffer (RFC 3656 3: responses
    /// carry the command's tag; 2.1 allows tags of up to 14 octets).
    TagTruncated,
    /// A failed AUTHENTICATE still leaves the session authenticated (RFC 3656 7).
    AcceptAfterFailedAuth,
    /// Streamed MAILBOX lines carry an empty ACL (RFC 3656 4.11: the changed record).
    StreamDropsAcl,
    /// STARTTLS is accepted after AUTHENTICATE (RFC 3656 4.10: only valid in the
    /// non-authenticated state).
    StarttlsAfterAuth,
    /// LIST with a location prefix also returns records whose location merely contains it
    /// (RFC 3656 4.6: locations that begin with the prefix).
    ListPrefixSubstring,
    /// SASL PLAIN lets any user act as any authzid, so a non-admin logs in as an admin and may
    /// write (RFC 4616 2: the credentials must permit acting as the authzid).
    PlainAuthzidUnchecked,
    /// UPDATE answers OK first and sends the initial dump after it (RFC 3656 4.11: the current
    /// records, then the OK that starts the stream).
    UpdateOkBeforeDump,
    /// New reservations are not sent to UPDATE streams, only MAILBOX and DELETE changes
    /// (RFC 3656 4.11: every change, and a slave must know reserved names, 4.9).
    ReserveNotStreamed,
}

impl Fault {
    /// Every fault switch.
    pub const ALL: [Fault; 28] = [
        Fault::ReserveAlwaysOk,
        Fault::DeleteMissingOk,
        Fault::NoNoopBarrier,
        Fault::CoalesceStream,
        Fault::UntaggedData,
        Fault::LogoutOk,
        Fault::CommandsBeforeLogin,
        Fault::StarttlsExecutesPipelined,
        Fault::SyncLiteralNoContinuation,
        Fault::ListIgnoresPrefix,
        Fault::FindReturnsReserveAsMailbox,
        Fault::DeactivateMissingOk,
        Fault::DropStreamDeletes,
        Fault::UpdateRefused,
        Fault::ReserveRace,
        Fault::NamesCaseInsensitive,
        Fault::DeactivateDeletes,
        Fault::ActivateKeepsAcl,
        Fault::UpdateDumpOmitsReserved,
        Fault::StreamTagFollowsNoop,
        Fault::TagTruncated,
        Fault::AcceptAfterFailedAuth,
        Fault::StreamDropsAcl,
        Fault::StarttlsAfterAuth,
        Fault::ListPrefixSubstring,
        Fault::PlainAuthzidUnchecked,
        Fault::UpdateOkBeforeDump,
        Fault::ReserveNotStreamed,
    ];

    /// The kebab-case name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::ReserveAlwaysOk => "reserve-always-ok",
            Fault::DeleteMissingOk => "delete-missing-ok",
            Fault::NoNoopBarrier => "no-noop-barrier",
            Fault::CoalesceStream => "coalesce-stream",
            Fault::UntaggedData => "untagged-data",
            Fault::LogoutOk => "logout-ok",
            Fault::CommandsBeforeLogin => "commands-before-login",
            Fault::StarttlsExecutesPipelined => "starttls-executes-pipelined",
            Fault::SyncLiteralNoContinuation => "sync-literal-no-continuation",
            Fault::ListIgnoresPrefix => "list-ignores-prefix",
            Fault::FindReturnsReserveAsMailbox => "find-returns-reserve-as-mailbox",
            Fault::DeactivateMissingOk => "deactivate-missing-ok",
            Fault::DropStreamDeletes => "drop-stream-deletes",
            Fault::UpdateRefused => "update-refused",
            Fault::ReserveRace => "reserve-race",
            Fault::NamesCaseInsensitive => "names-case-insensitive",
            Fault::DeactivateDeletes => "deactivate-deletes",
            Fault::ActivateKeepsAcl => "activate-keeps-acl",
            Fault::UpdateDumpOmitsReserved => "update-dump-omits-reserved",
            Fault::StreamTagFollowsNoop => "stream-tag-follows-noop",
            Fault::TagTruncated => "tag-truncated",
            Fault::AcceptAfterFailedAuth => "accept-after-failed-auth",
            Fault::StreamDropsAcl => "stream-drops-acl",
            Fault::StarttlsAfterAuth => "starttls-after-auth",
            Fault::ListPrefixSubstring => "list-prefix-substring",
            Fault::PlainAuthzidUnchecked => "plain-authzid-unchecked",
            Fault::UpdateOkBeforeDump => "update-ok-before-dump",
            Fault::ReserveNotStreamed => "reserve-not-streamed",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown fault name.
#[derive(Debug, thiserror::Error)]
#[error("unknown fault {0:?}")]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s || format!("{f:?}") == s)
            .ok_or_else(|| UnknownFault(s.to_string()))
    }
}

/// The set of active faults (empty by default: a correct server).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults(pub BTreeSet<Fault>);

impl Faults {
    /// No fault.
    pub fn none() -> Self {
        Faults::default()
    }

    /// True when `fault` is switched on.
    pub fn has(&self, fault: Fault) -> bool {
        self.0.contains(&fault)
    }
}

impl FromIterator<Fault> for Faults {
    fn from_iter<I: IntoIterator<Item = Fault>>(iter: I) -> Self {
        Faults(iter.into_iter().collect())
    }
}

/// The [`Fault::ReserveRace`] mutant's RESERVE: check the committed snapshot, await
/// [`RESERVE_RACE_WINDOW`], then write the reservation as an unconditional upsert (the store's
/// replication path), instead of letting the store's writer check and commit atomically. Any
/// other command, and a RESERVE of a taken or invalid name, goes through
/// [`MupdateStore::execute`] unchanged.
pub(crate) async fn racy_reserve(
    store: &MupdateStore,
    command: Command,
) -> Result<Reply, StoreError> {
    let Command::Reserve { name, location } = &command else {
        return store.execute(command).await;
    };
    if !is_valid_name(name) || store.snapshot().get(name).is_some() {
        return store.execute(command).await;
    }
    tokio::time::sleep(RESERVE_RACE_WINDOW).await;
    let record = Record {
        name: name.clone(),
        entry: MailboxEntry::Reserved {
            location: location.clone(),
        },
    };
    store.apply_replicated(Change::Upsert(record)).await?;
    Ok(Reply {
        data: Vec::new(),
        result: Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Fault::ALL {
            assert_eq!(f.name().parse::<Fault>().unwrap(), f);
            assert_eq!(format!("{f:?}").parse::<Fault>().unwrap(), f);
        }
        assert!("nope".parse::<Fault>().is_err());
    }
}
