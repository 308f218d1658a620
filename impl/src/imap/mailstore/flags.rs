//! The flags of one message, as the in-memory view keeps them.
//!
//! Why not a `BTreeSet<String>`: the view holds every message of every mailbox, and a
//! one-element `BTreeSet<String>` allocates a whole B-tree leaf (eleven `String` slots, ~280 B)
//! plus the string, ~0.3 KiB for a message flagged `\Seen` — more than the rest of its entry
//! in the view (~110 B of heap per message, measured with heaptrack). Here the five system
//! flags are bits and keywords a boxed list that is empty (no allocation) for most messages.
//! Iteration order is the byte order of the names, as the `BTreeSet<String>` it replaces gave.

/// The system flags a client may set, in byte order; bit `i` of [`FlagSet`] is `SYSTEM[i]`.
const SYSTEM: [&str; 5] = ["\\Answered", "\\Deleted", "\\Draft", "\\Flagged", "\\Seen"];

/// A set of flag names (system flags exactly as spelled in [`SYSTEM`], anything else a keyword).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlagSet {
    system: u8,
    /// Sorted, no duplicates.
    keywords: Box<[Box<str>]>,
}

fn system_bit(name: &str) -> Option<u8> {
    SYSTEM
        .iter()
        .position(|s| *s == name)
        .and_then(|i| u8::try_from(i).ok())
        .map(|i| 1u8 << i)
}

impl FlagSet {
    /// An empty set.
    pub fn new() -> FlagSet {
        FlagSet::default()
    }

    /// Whether `name` is in the set (exact spelling).
    pub fn contains(&self, name: &str) -> bool {
        match system_bit(name) {
            Some(bit) => self.system & bit != 0,
            None => self.keywords.iter().any(|k| &**k == name),
        }
    }

    /// Add `name`; true if it was not there.
    pub fn insert(&mut self, name: &str) -> bool {
        if let Some(bit) = system_bit(name) {
            let added = self.system & bit == 0;
            self.system |= bit;
            return added;
        }
        match self.keywords.binary_search_by(|k| (**k).cmp(name)) {
            Ok(_) => false,
            Err(at) => {
                let mut v = std::mem::take(&mut self.keywords).into_vec();
                v.insert(at, name.into());
                self.keywords = v.into_boxed_slice();
                true
            }
        }
    }

    /// Remove `name`; true if it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        if let Some(bit) = system_bit(name) {
            let had = self.system & bit != 0;
            self.system &= !bit;
            return had;
        }
        match self.keywords.binary_search_by(|k| (**k).cmp(name)) {
            Ok(at) => {
                let mut v = std::mem::take(&mut self.keywords).into_vec();
                v.remove(at);
                self.keywords = v.into_boxed_slice();
                true
            }
            Err(_) => false,
        }
    }

    /// The names, in byte order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let mut all: Vec<&str> = SYSTEM
            .iter()
            .enumerate()
            .filter(|(i, _)| self.system & (1u8 << i) != 0)
            .map(|(_, s)| *s)
            .chain(self.keywords.iter().map(|k| &**k))
            .collect();
        all.sort_unstable();
        all.into_iter()
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.system.count_ones() as usize + self.keywords.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The names as owned strings, in byte order.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl<S: AsRef<str>> FromIterator<S> for FlagSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> FlagSet {
        let mut set = FlagSet::new();
        set.extend(iter);
        set
    }
}

impl<S: AsRef<str>> Extend<S> for FlagSet {
    fn extend<I: IntoIterator<Item = S>>(&mut self, iter: I) {
        for name in iter {
            self.insert(name.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn system_flags_take_no_allocation_and_keywords_are_kept() {
        let mut f: FlagSet = ["\\Seen", "$Junk", "\\Answered"].into_iter().collect();
        assert!(f.contains("\\Seen") && f.contains("$Junk") && !f.contains("\\seen"));
        assert_eq!(
            f.iter().collect::<Vec<_>>(),
            ["$Junk", "\\Answered", "\\Seen"]
        );
        assert!(f.remove("\\Seen") && !f.remove("\\Seen"));
        assert!(f.remove("$Junk"));
        assert_eq!(f.len(), 1);
        assert!(f.keywords.is_empty());
        // A flag spelled unlike the system one is a keyword of its own.
        assert!(f.insert("\\answered"));
        assert_eq!(f.len(), 2);
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(SYSTEM.to_vec()).prop_map(str::to_string),
            "[A-Za-z$\\\\][a-z0-9]{0,4}",
        ]
    }

    proptest! {
        /// Every operation agrees with the `BTreeSet<String>` it replaces, order included.
        #[test]
        fn behaves_like_a_btreeset(ops in prop::collection::vec((any::<bool>(), name()), 0..40)) {
            let mut model = BTreeSet::new();
            let mut set = FlagSet::new();
            for (add, n) in ops {
                if add {
                    prop_assert_eq!(set.insert(&n), model.insert(n.clone()));
                } else {
                    prop_assert_eq!(set.remove(&n), model.remove(&n));
                }
                prop_assert_eq!(set.contains(&n), model.contains(&n));
                prop_assert_eq!(set.len(), model.len());
                prop_assert_eq!(set.to_vec(), model.iter().cloned().collect::<Vec<_>>());
            }
        }
    }
}
