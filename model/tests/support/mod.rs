//! Shared helpers of the model-checking tests: run a checker, print its numbers, judge it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    dead_code
)]

use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model, Path};

/// Print the numbers of a finished check.
pub fn report<M: Model, C: Checker<M>>(label: &str, c: &C, took: Duration) {
    println!(
        "{label}: states={} unique={} max_depth={} time={took:.2?}",
        c.state_count(),
        c.unique_state_count(),
        c.max_depth()
    );
}

/// Check `model` exhaustively with DFS, print the numbers, assert every property, return the
/// number of unique states (tests pin it).
pub fn check<M>(label: &str, model: M) -> usize
where
    M: Model + Send + Sync + 'static,
    M::State: Hash + Send + Sync + Debug + Clone + PartialEq + 'static,
    M::Action: Debug + Clone + PartialEq,
{
    let t = Instant::now();
    let c = model.checker().spawn_dfs().join();
    report(label, &c, t.elapsed());
    c.assert_properties();
    c.unique_state_count()
}

/// Search `model` until it finds a counterexample to `property` (BFS when `bfs`), print the
/// numbers, and return the path; panic when there is none.
pub fn discovery<M>(
    label: &str,
    model: M,
    property: &'static str,
    bfs: bool,
) -> (M, Path<M::State, M::Action>)
where
    M: Model + Send + Sync + Clone + 'static,
    M::State: Hash + Send + Sync + Debug + Clone + PartialEq + 'static,
    M::Action: Debug + Clone + PartialEq,
{
    assert!(
        model.properties().iter().any(|p| p.name == property),
        "{property} is not a property of this configuration"
    );
    let t = Instant::now();
    let builder = model
        .clone()
        .checker()
        .finish_when(HasDiscoveries::AnyOf([property].into_iter().collect()));
    let path = if bfs {
        let c = builder.spawn_bfs().join();
        report(label, &c, t.elapsed());
        c.discovery(property)
    } else {
        let c = builder.spawn_dfs().join();
        report(label, &c, t.elapsed());
        c.discovery(property)
    };
    let path = path.unwrap_or_else(|| panic!("{label}: no counterexample to {property:?}"));
    (model, path)
}
