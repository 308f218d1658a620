//! Symmetry reduction for the slaves: slaves are interchangeable (backends are not: their
//! identity is in the locations the master stores), so a state and the same state with two
//! slaves swapped are equivalent. [`slave_symmetry`] sorts the slave block into a representative
//! for `checker().symmetry_fn(..)` (honoured by DFS only, as measured in crates.md).
//!
//! Every property quantifies over all slaves alike, so the reduction is sound for them.

use std::sync::Arc;

use stateright::actor::{Envelope, Id, Network};

use super::MurderState;
use super::properties::SystemState;

/// Map a slave permutation over an id.
fn remap(map: &[usize], id: Id) -> Id {
    Id::from(map.get(usize::from(id)).copied().unwrap_or(usize::from(id)))
}

/// Reorder `v` so that item `old` lands at `map[old]`.
fn permute<T: Clone>(v: &[T], map: &[usize]) -> Vec<T> {
    let mut out: Vec<T> = v.to_vec();
    for (old, item) in v.iter().enumerate() {
        if let Some(slot) = map.get(old).and_then(|&new| out.get_mut(new)) {
            *slot = item.clone();
        }
    }
    out
}

/// The representative of `s` under permutations of the slaves.
pub fn slave_symmetry(s: &SystemState) -> SystemState {
    let slaves: Vec<usize> = s
        .actor_states
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(&***a, MurderState::Slave(_)))
        .map(|(i, _)| i)
        .collect();
    if slaves.len() < 2 {
        return s.clone();
    }
    // Not `network.iter_all()`: for ordered networks stateright 0.31's iterator never advances
    // within a channel and loops forever.
    let envelopes: Vec<Envelope<super::Msg>> = match &s.network {
        Network::Ordered(map) => map
            .iter()
            .flat_map(|(&(src, dst), q)| {
                q.iter().map(move |msg| Envelope {
                    src,
                    dst,
                    msg: msg.clone(),
                })
            })
            .collect(),
        _ => return s.clone(),
    };
    let key = |i: usize| -> String {
        let inbox: Vec<String> = envelopes
            .iter()
            .filter(|e| usize::from(e.src) == i || usize::from(e.dst) == i)
            .map(|e| {
                format!(
                    "{}>{}:{:?}",
                    usize::from(e.src) == i,
                    usize::from(e.dst) == i,
                    e.msg
                )
            })
            .collect();
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}",
            s.actor_states.get(i),
            s.actor_storages.get(i),
            s.crashed.get(i),
            s.timers_set.get(i),
            inbox
        )
    };
    let mut order = slaves.clone();
    order.sort_by_cached_key(|&i| key(i));
    let mut map: Vec<usize> = (0..s.actor_states.len()).collect();
    for (&slot, &old) in slaves.iter().zip(&order) {
        if let Some(m) = map.get_mut(old) {
            *m = slot;
        }
    }
    let actor_states: Vec<Arc<MurderState>> = permute(&s.actor_states, &map)
        .into_iter()
        .map(|a| match &*a {
            MurderState::Master(m) => {
                let mut m = m.clone();
                m.subs = m
                    .subs
                    .iter()
                    .map(|(id, v)| (remap(&map, *id), *v))
                    .collect();
                Arc::new(MurderState::Master(m))
            }
            _ => a,
        })
        .collect();
    SystemState {
        actor_states,
        network: Network::new_ordered(envelopes.into_iter().map(|e| Envelope {
            src: remap(&map, e.src),
            dst: remap(&map, e.dst),
            msg: e.msg,
        })),
        timers_set: permute(&s.timers_set, &map),
        random_choices: permute(&s.random_choices, &map),
        crashed: permute(&s.crashed, &map),
        history: s.history,
        actor_storages: permute(&s.actor_storages, &map),
    }
}
