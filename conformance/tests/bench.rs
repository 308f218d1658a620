//! `conformance bench` against the embedded reference servers (on disk) with tiny sizes: every
//! workload runs to completion and reports the phases and checks it promises. No timing is
//! asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use conformance::bench::progress::Progress;
use conformance::bench::{BenchResult, Spec, Workload, execute, render};

fn names(r: &BenchResult) -> Vec<&str> {
    r.phases.iter().map(|p| p.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_runs_against_the_embedded_servers() {
    let emb = conformance::embedded::start_on_disk().await.unwrap();
    let (user, pw) = emb.creds.user.clone().unwrap();
    let mupdate = emb.mupdate.local_addr().to_string();
    let imap = emb.imap.local_addr().to_string();
    let progress = Progress::hidden();

    let mut s = Spec::new(Workload::MupdateWrite, &mupdate, &user, &pw);
    s.clients = 3;
    s.ops = Some(30);
    let r = execute(&s, &progress).await.unwrap();
    assert!(r.ok, "{}", render(&r));
    assert_eq!(names(&r), ["write"]);
    assert_eq!(r.phases[0].count, 30);
    assert_eq!(r.phases[0].samples, 30);
    assert_eq!(r.figures["verified"], 30.0);
    assert_eq!(r.figures["missing"], 0.0);

    let mut s = Spec::new(Workload::MupdateFanout, &mupdate, &user, &pw);
    s.clients = 2;
    s.streams = 3;
    s.rate = 1000;
    s.ops = Some(20);
    let r = execute(&s, &progress).await.unwrap();
    assert!(r.ok, "{}", render(&r));
    assert_eq!(names(&r), ["writes", "fanout-to-last", "initial-update"]);
    assert_eq!(r.phases[0].count, 20);
    assert_eq!(r.phases[1].count, 20);
    assert_eq!(r.phases[1].samples, 20);
    assert_eq!(r.phases[2].count, 3);
    assert_eq!(r.figures["streams_dropped"], 0.0);
    assert_eq!(r.figures["missed"], 0.0);

    let mut s = Spec::new(Workload::MupdateList, &mupdate, &user, &pw);
    s.clients = 2;
    s.mailboxes = 1200;
    s.ops = Some(2);
    let r = execute(&s, &progress).await.unwrap();
    assert!(r.ok, "{}", render(&r));
    assert_eq!(names(&r), ["populate", "list", "initial-update"]);
    assert_eq!(r.phases[0].count, 1200);
    assert_eq!(r.figures["lists"], 2.0);
    // The database also holds the earlier workloads' mailboxes.
    assert!(r.figures["list_records"] >= 1200.0 + 30.0 + 20.0);
    assert_eq!(r.phases[1].count as f64, 2.0 * r.figures["list_records"]);

    let mut s = Spec::new(Workload::ImapMultiappend, &imap, &user, &pw);
    s.clients = 2;
    s.ops = Some(2);
    s.batch = 5;
    s.large_count = 2;
    s.large_size = 200_000;
    let r = execute(&s, &progress).await.unwrap();
    assert!(r.ok, "{}", render(&r));
    assert_eq!(
        names(&r),
        ["multiappend-small", "multiappend-large", "append-single"]
    );
    // --ops 2 is two commands per phase over both clients.
    assert_eq!(r.phases[0].count, 10);
    assert_eq!(r.phases[0].bytes, 10 * 2048);
    assert_eq!(r.phases[1].count, 4);
    assert_eq!(r.phases[1].bytes, 4 * 200_000);
    assert_eq!(r.phases[2].count, 2);
    assert_eq!(r.figures["status_messages"], 16.0);
    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["workload"], "imap-multiappend");
    assert!(json["phases"][0]["p99_ms"].is_number());

    emb.shutdown().await;
}

#[tokio::test]
async fn non_loopback_targets_are_refused_before_connecting() {
    let s = Spec::new(Workload::MupdateWrite, "192.0.2.1:3905", "u", "p");
    let e = execute(&s, &Progress::hidden()).await.unwrap_err();
    assert!(e.to_string().contains("loopback"), "{e}");
}
