//! The runner end to end against a small fake MUPDATE server (tests/support): the example
//! scenarios pass, deliberate bugs fail with explained reports, a crash turns the rest NOT-RUN,
//! and the exit codes hold (0, 1, 2, 3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

use std::path::{Path, PathBuf};

use clap::Parser as _;
use conformance::cli::{Cli, main_with};
use support::{Fault, start};

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

async fn run(args: &[&str]) -> i32 {
    let mut v = vec!["conformance"];
    v.extend_from_slice(args);
    main_with(Cli::parse_from(v)).await
}

fn write_scenarios(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_mupdate_scenarios_pass_against_a_correct_server() {
    let srv = start(Fault::None).await;
    let examples = support::example_scenarios();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("r.json");
    let addr = srv.addr.to_string();
    let code = run(&[
        "--target",
        &addr,
        "--user",
        "admin",
        "--password",
        "pw",
        "--scenarios",
        examples.path().to_str().unwrap(),
        "--suite",
        "mupdate",
        "--json",
        json.to_str().unwrap(),
        "--bundle-dir",
        out.path().join("b").to_str().unwrap(),
    ])
    .await;
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(code, 0, "{report:#}");
    let grades: Vec<(String, String)> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["grade"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        grades
            .iter()
            .any(|(id, g)| id == "mupdate/reserve-race" && g == "PASS"),
        "{grades:?}"
    );
    assert!(
        grades
            .iter()
            .any(|(id, g)| id == "mupdate/update-sees-other-activate" && g == "PASS"),
        "{grades:?}"
    );
    assert!(grades.iter().all(|(_, g)| g == "PASS"), "{grades:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_3_when_nothing_is_selected() {
    assert_eq!(
        run(&[
            "--scenarios",
            scenarios().to_str().unwrap(),
            "--filter",
            "no-such-case-*",
            "--target",
            "127.0.0.1:1"
        ])
        .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_2_when_the_target_is_unreachable() {
    // Bind then drop: the port is (very likely) closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    assert_eq!(
        run(&[
            "--scenarios",
            scenarios().to_str().unwrap(),
            "--target",
            &target,
            "--timeout",
            "2"
        ])
        .await,
        2
    );
    assert_eq!(run(&["--target", "no-port"]).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_exits_0() {
    assert_eq!(
        run(&["--scenarios", scenarios().to_str().unwrap(), "--list"]).await,
        0
    );
}

const RESERVE_TWICE: &str = "id: mupdate/reserve-twice\ntitle: second RESERVE is refused\nprotocol: mupdate\nrfc: RFC3656 4.9\nlevel: MUST\n\
[test]\nopen c\nc > R1 RESERVE \"$box\" \"$host!p\"\nc < $tag OK ...\nc > R2 RESERVE \"$box\" \"$host!p\"\nc < $tag NO ...\n\
[cleanup]\nopen z\nz > D1 DELETE \"$box\"\nz < $tag OK|NO ...\n";

const LOGOUT: &str = "id: mupdate/logout-bye\ntitle: LOGOUT gets BYE\nprotocol: mupdate\nrfc: RFC3656 4.7\nlevel: SHOULD\n\
open c noauth\nc > L1 LOGOUT\nc < $tag BYE ...\nc closed\n";

const RACE: &str = "id: mupdate/race\ntitle: race\nprotocol: mupdate\nrfc: RFC3656 4.9\nlevel: MUST\n\
open a\nopen b\nopen c\nrace\n a > R1 RESERVE \"$box\" \"$host!p\"\n b > R2 RESERVE \"$box\" \"$host2!p\"\n c > R3 RESERVE \"$box\" \"$host3!p\"\nend\na >! F1 FIND \"$box\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buggy_server_fails_with_explanations_json_and_junit() {
    let srv = start(Fault::ReserveAlwaysOk).await;
    let dir = tempfile::tempdir().unwrap();
    write_scenarios(
        dir.path(),
        &[
            ("mupdate/reserve-twice.scn", RESERVE_TWICE),
            ("mupdate/race.scn", RACE),
        ],
    );
    let json = dir.path().join("r.json");
    let junit = dir.path().join("r.xml");
    let bundles = dir.path().join("bundles");
    let addr = srv.addr.to_string();
    let code = run(&[
        "--target",
        &addr,
        "--user",
        "admin",
        "--password",
        "pw",
        "--jobs",
        "1",
        "--scenarios",
        dir.path().to_str().unwrap(),
        "--run-id",
        "00c0de",
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--bundle-dir",
        bundles.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 1);
    let filters = vec![
        (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
        (r#""elapsed_ms": \d+"#, r#""elapsed_ms": 0"#),
        (r#"time="[0-9.]+""#, r#"time="0""#),
        (r"timestamp=.[^ ]+.", ""),
        (r" +\d+ms ", " Tms "),
    ];
    let json_text = std::fs::read_to_string(&json).unwrap();
    let junit_text = std::fs::read_to_string(&junit).unwrap();
    insta::with_settings!({ filters => filters.clone() }, {
        insta::assert_snapshot!("buggy_json", json_text);
        insta::assert_snapshot!("buggy_junit", junit_text);
    });
    // The bundle replays: same failure, same names.
    let b = bundles.join("mupdate_reserve-twice");
    assert!(b.join("bundle.json").exists());
    let failure = std::fs::read_to_string(b.join("failure.txt")).unwrap();
    assert!(failure.contains("RFC3656 4.9"), "{failure}");
    assert!(failure.contains("R2 OK"), "{failure}");
    let code = run(&[
        "replay",
        b.to_str().unwrap(),
        "--target",
        &addr,
        "--user",
        "admin",
        "--password",
        "pw",
        "--bundle-dir",
        dir.path().join("b2").to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 1);
    // Against a correct server the replay passes.
    let good = start(Fault::None).await;
    let code = run(&[
        "replay",
        b.to_str().unwrap(),
        "--target",
        &good.addr.to_string(),
        "--user",
        "admin",
        "--password",
        "pw",
    ])
    .await;
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn should_failures_are_non_strict_and_waivers_work() {
    let srv = start(Fault::LogoutOk).await;
    let dir = tempfile::tempdir().unwrap();
    write_scenarios(
        dir.path(),
        &[
            ("mupdate/logout-bye.scn", LOGOUT),
            ("mupdate/reserve-twice.scn", RESERVE_TWICE),
        ],
    );
    let json = dir.path().join("r.json");
    let addr = srv.addr.to_string();
    let bdir = dir.path().join("b");
    let base = [
        "--target",
        &addr,
        "--user",
        "admin",
        "--password",
        "pw",
        "--scenarios",
        dir.path().to_str().unwrap(),
        "--bundle-dir",
        bdir.to_str().unwrap(),
    ];
    let mut args = base.to_vec();
    args.extend(["--json", json.to_str().unwrap()]);
    assert_eq!(
        run(&args).await,
        0,
        "a SHOULD failure does not fail the run"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let logout = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "mupdate/logout-bye")
        .unwrap();
    assert_eq!(logout["grade"], "NON-STRICT");
    assert_eq!(logout["failure"]["expected"], "$tag BYE ...");
    // --level must skips the SHOULD case entirely.
    let mut must = base.to_vec();
    must.extend(["--level", "must", "--filter", "logout"]);
    assert_eq!(run(&must).await, 3);
    // A waiver for a passing case fails the run (the list must shrink).
    let waivers = dir.path().join("waivers");
    std::fs::write(&waivers, "mupdate/reserve-*  known bug\n").unwrap();
    let mut w = base.to_vec();
    w.extend(["--expect-fail", waivers.to_str().unwrap()]);
    assert_eq!(run(&w).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_marks_the_rest_not_run() {
    let srv = start(Fault::CrashOnDelete).await;
    let dir = tempfile::tempdir().unwrap();
    let crash = "id: mupdate/a-crash\ntitle: delete\nprotocol: mupdate\nrfc: RFC3656 4.4\nlevel: MUST\n\
open c\nc > A1 ACTIVATE \"$box\" \"$host!p\" \"\"\nc < $tag OK ...\nc > D1 DELETE \"$box\"\nc < $tag OK ...\n";
    write_scenarios(
        dir.path(),
        &[
            ("mupdate/a-crash.scn", crash),
            ("mupdate/reserve-twice.scn", RESERVE_TWICE),
        ],
    );
    let json = dir.path().join("r.json");
    let addr = srv.addr.to_string();
    let code = run(&[
        "--target",
        &addr,
        "--user",
        "admin",
        "--password",
        "pw",
        "--jobs",
        "1",
        "--timeout",
        "2",
        "--scenarios",
        dir.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--bundle-dir",
        dir.path().join("b").to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 1);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases[0]["grade"], "FAIL");
    let msg = cases[0]["failure"]["message"].as_str().unwrap();
    assert!(msg.contains("after `D1 DELETE"), "{msg}");
    assert!(msg.contains("no longer accepts connections"), "{msg}");
    assert_eq!(cases[1]["grade"], "NOT-RUN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_imap_scenarios_pass_against_a_correct_server() {
    let srv = support::imap::start().await;
    let examples = support::example_scenarios();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("r.json");
    let addr = srv.addr.to_string();
    let code = run(&[
        "--target",
        &addr,
        "--user",
        "u",
        "--password",
        "p",
        "--scenarios",
        examples.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--bundle-dir",
        out.path().join("b").to_str().unwrap(),
    ])
    .await;
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(code, 0, "{report:#}");
    let cases = report["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    assert!(
        cases
            .iter()
            .all(|c| c["protocol"] == "imap" && c["grade"] == "PASS"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_suite_for_the_greeting_exits_2() {
    let srv = support::imap::start().await;
    let addr = srv.addr.to_string();
    assert_eq!(
        run(&[
            "--target",
            &addr,
            "--suite",
            "mupdate",
            "--scenarios",
            scenarios().to_str().unwrap()
        ])
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_exit_2_instead_of_failing_every_case() {
    let srv = support::imap::start().await;
    let addr = srv.addr.to_string();
    let s = scenarios();
    assert_eq!(
        run(&[
            "--target",
            &addr,
            "--user",
            "u",
            "--password",
            "wrong",
            "--scenarios",
            s.to_str().unwrap()
        ])
        .await,
        2
    );
}
