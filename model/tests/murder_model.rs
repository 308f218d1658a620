//! Exhaustive checks of the Murder model at bounded sizes (every property holds, exact unique
//! state counts pinned), and the broken variants whose counterexamples each property must find.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::time::Instant;

use murder_model::murder::properties::*;
use murder_model::murder::transcript::{render, shortest_discovery};
use murder_model::murder::{Bugs, MurderConfig, Op};
use stateright::{Checker, HasDiscoveries, Model};

/// Check exhaustively with DFS, print the numbers, assert every property, return unique states.
fn check(label: &str, cfg: MurderConfig) -> usize {
    support::check(label, cfg.into_model())
}

/// Assert that the checker finds a counterexample to `property` in `cfg`; print it.
fn discovers(label: &str, cfg: MurderConfig, property: &'static str) {
    let (model, path) = support::discovery(label, cfg.into_model(), property, false);
    println!("{}", render(&model, property, &path));
}

fn crashy(master: bool, slaves: bool, backends: bool) -> MurderConfig {
    MurderConfig {
        crashes: 1,
        crash_master: master,
        crash_slaves: slaves,
        crash_backends: backends,
        ..MurderConfig::small()
    }
}

/// Backend 0 creates and deletes `a`, backend 1 creates `b`: two names change in one stream.
fn two_names() -> MurderConfig {
    MurderConfig {
        plans: vec![vec![Op::Create(0), Op::Delete(0)], vec![Op::Create(1)]],
        noops: 1,
        ..MurderConfig::small()
    }
}

fn bugged(cfg: MurderConfig, bugs: Bugs) -> MurderConfig {
    MurderConfig { bugs, ..cfg }
}

// ---- the design holds -------------------------------------------------------------------

#[test]
fn race_without_faults_holds() {
    assert_eq!(check("race, no fault", MurderConfig::small()), 2268);
}

#[test]
fn backend_crash_with_repair_holds() {
    assert_eq!(
        check("backend crash + repair", crashy(false, false, true)),
        26300
    );
}

#[test]
fn master_crash_holds() {
    assert_eq!(check("master crash", crashy(true, false, false)), 124108);
}

#[test]
fn any_one_crash_holds() {
    assert_eq!(check("any one crash", crashy(true, true, true)), 162252);
}

#[test]
fn slave_crash_holds() {
    assert_eq!(check("slave crash", crashy(false, true, false)), 16380);
}

#[test]
fn link_loss_and_noop_hold() {
    let cfg = MurderConfig {
        link_drops: 1,
        noops: 1,
        ..MurderConfig::small()
    };
    assert_eq!(check("link loss + NOOP", cfg), 47403);
}

#[test]
fn two_names_streaming_holds() {
    assert_eq!(check("two names, NOOP", two_names()), 52550);
}

// ---- the RFC design without repair: stale reservations and lost updates ------------------

#[test]
fn backend_crash_between_reserve_and_activate_leaves_a_stale_reservation() {
    let cfg = MurderConfig {
        repair: false,
        ..crashy(false, false, true)
    };
    discovers("no repair, backend crash", cfg, REST_CONSISTENT);
}

#[test]
fn backend_crash_before_local_delete_without_repair_serves_twice() {
    let cfg = MurderConfig {
        repair: false,
        ..crashy(false, false, true)
    };
    discovers("no repair, backend crash (delete)", cfg, ONE_HOLDER);
}

#[test]
fn master_crash_without_repair_leaves_a_stale_reservation() {
    let cfg = MurderConfig {
        repair: false,
        ..crashy(true, false, false)
    };
    discovers("no repair, master crash", cfg, REST_CONSISTENT);
}

#[test]
fn shortest_stale_reservation_transcript() {
    let cfg = MurderConfig {
        repair: false,
        plans: vec![vec![Op::Create(0)]],
        slaves: 0,
        ..crashy(false, false, true)
    };
    let path = shortest_discovery(&cfg, REST_CONSISTENT).expect("stale reservation");
    let text = render(&cfg.clone().into_model(), REST_CONSISTENT, &path);
    println!("{text}");
    // RESERVE granted, crash before the local create, restart: the reservation stays.
    assert_eq!(path.clone().into_actions().len(), 5, "{text}");
    assert!(text.contains("be0 C: X0 RESERVE \"a\" \"be0!p\""), "{text}");
    assert!(text.contains("be0 S: X0 OK"), "{text}");
    assert!(text.contains("! crash be0"), "{text}");
    assert!(
        text.contains("# final master: * RESERVE \"a\" \"be0!p\""),
        "{text}"
    );
}

// ---- every property can fail -------------------------------------------------------------

#[test]
fn reserve_over_existing_name_breaks_one_holder() {
    let b = Bugs {
        reserve_over_existing: true,
        ..Bugs::default()
    };
    discovers(
        "bug: RESERVE over existing",
        bugged(MurderConfig::small(), b),
        ONE_HOLDER,
    );
}

#[test]
fn blind_reactivate_steals_a_name() {
    let b = Bugs {
        blind_reactivate: true,
        ..Bugs::default()
    };
    discovers(
        "bug: blind re-ACTIVATE",
        bugged(crashy(false, false, true), b),
        ONE_HOLDER,
    );
}

#[test]
fn local_delete_first_breaks_active_is_held() {
    let b = Bugs {
        local_delete_first: true,
        ..Bugs::default()
    };
    discovers(
        "bug: local delete first",
        bugged(MurderConfig::small(), b),
        ACTIVE_IS_HELD,
    );
}

#[test]
fn ok_before_commit_loses_an_update() {
    let b = Bugs {
        ok_before_commit: true,
        ..Bugs::default()
    };
    discovers(
        "bug: OK before commit",
        bugged(crashy(true, false, false), b),
        ACTIVE_IS_HELD,
    );
}

#[test]
fn coalesced_stream_shows_a_state_the_master_never_had() {
    let b = Bugs {
        coalesce_stream: true,
        ..Bugs::default()
    };
    discovers(
        "bug: coalesced stream",
        bugged(two_names(), b),
        SLAVE_SHOWS_MASTER_STATE,
    );
}

#[test]
fn noop_before_flush_breaks_the_barrier() {
    let b = Bugs {
        noop_before_flush: true,
        ..Bugs::default()
    };
    discovers(
        "bug: NOOP before flush",
        bugged(two_names(), b),
        NOOP_BARRIER,
    );
}

#[test]
fn merge_resync_keeps_deleted_names() {
    let b = Bugs {
        merge_resync: true,
        ..Bugs::default()
    };
    let cfg = MurderConfig {
        link_drops: 1,
        ..MurderConfig::small()
    };
    discovers("bug: merge resync", bugged(cfg, b), REST_SLAVES_CONVERGE);
}

#[test]
fn ignoring_master_restart_never_converges() {
    let b = Bugs {
        ignore_reset: true,
        ..Bugs::default()
    };
    discovers(
        "bug: ignore reset",
        bugged(crashy(true, false, false), b),
        EVENTUALLY_DONE,
    );
}

// ---- counterexamples become conformance scenarios ----------------------------------------

#[test]
fn noop_barrier_counterexample_becomes_a_scenario() {
    let b = Bugs {
        noop_before_flush: true,
        ..Bugs::default()
    };
    let cfg = bugged(two_names(), b);
    let path = shortest_discovery(&cfg, NOOP_BARRIER).expect("barrier bug");
    let model = cfg.clone().into_model();
    let scn = murder_model::murder::scenario::to_scenario(
        &model,
        NOOP_BARRIER,
        "model-noop-barrier",
        &path,
    );
    println!("{scn}");
    for needle in [
        "id: mupdate/model-noop-barrier",
        "rfc: RFC3656 4.8",
        "level: MUST",
        "[test]",
        "> U1 UPDATE",
        "collect dslave0c1 mine until $tag OK ...",
        "> N1 NOOP",
        "<< $tag OK ...",
        "check >! L1 LIST",
        "[cleanup]",
    ] {
        assert!(scn.contains(needle), "missing {needle:?} in\n{scn}");
    }
    // The committed change the broken master held back must be expected before N1's OK.
    let n1 = scn.find("> N1 NOOP").unwrap();
    let ok = scn[n1..].find("<< $tag OK").unwrap();
    assert!(scn[n1..n1 + ok].contains("<< U1 "), "{scn}");
}

// ---- symmetry over slaves ----------------------------------------------------------------

#[test]
fn two_slaves_with_symmetry_hold() {
    let cfg = MurderConfig {
        slaves: 2,
        ..MurderConfig::small()
    };
    let t = Instant::now();
    let c = cfg
        .clone()
        .into_model()
        .checker()
        .symmetry_fn(murder_model::murder::symmetry::slave_symmetry)
        .spawn_dfs()
        .join();
    support::report("two slaves + symmetry", &c, t.elapsed());
    c.assert_properties();
    let plain = check("two slaves, no symmetry", cfg);
    assert!(c.unique_state_count() < plain);
    assert_eq!((c.unique_state_count(), plain), (17685, 33102));
}

#[test]
fn symmetry_still_finds_the_noop_barrier_bug() {
    let b = Bugs {
        noop_before_flush: true,
        ..Bugs::default()
    };
    let cfg = MurderConfig {
        slaves: 2,
        ..bugged(two_names(), b)
    };
    let c = cfg
        .into_model()
        .checker()
        .symmetry_fn(murder_model::murder::symmetry::slave_symmetry)
        .finish_when(HasDiscoveries::AnyOf([NOOP_BARRIER].into_iter().collect()))
        .spawn_dfs()
        .join();
    assert!(c.discovery(NOOP_BARRIER).is_some());
}

// ---- Cyrus HEAD's create order (spec 6.3) ------------------------------------------------

fn cyrus_order() -> Bugs {
    Bugs {
        cyrus_create_order: true,
        ..Bugs::default()
    }
}

#[test]
fn cyrus_create_order_survives_backend_crashes_with_repair() {
    let cfg = bugged(crashy(false, false, true), cyrus_order());
    assert_eq!(
        check("Cyrus create order, backend crash + repair", cfg),
        23868
    );
}

#[test]
fn cyrus_create_order_rollback_leaves_a_dangling_active_record() {
    // The master commits ACTIVATE and dies before the OK; the backend rolls its mailbox back and
    // sends no DELETE: FIND points at a backend without the mailbox (until a repair, if any).
    let cfg = bugged(crashy(true, false, false), cyrus_order());
    discovers("Cyrus create order, master crash", cfg, ACTIVE_IS_HELD);
}
