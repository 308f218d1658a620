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

/// `conformance --target TARGET --user U --password P --scenarios DIR --bundle-dir OUT/b EXTRA...`
/// (the fake MUPDATE server's admin is `admin`/`pw`, the fake IMAP server's user `u`/`p`).
async fn run_with(
    target: &str,
    (user, password): (&str, &str),
    scenarios: &Path,
    out: &Path,
    extra: &[&str],
) -> i32 {
    let bundles = out.join("b");
    let mut v = vec![
        "--target",
        target,
        "--user",
        user,
        "--password",
        password,
        "--scenarios",
        scenarios.to_str().unwrap(),
        "--bundle-dir",
        bundles.to_str().unwrap(),
    ];
    v.extend_from_slice(extra);
    run(&v).await
}

const ADMIN: (&str, &str) = ("admin", "pw");

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(id, grade)` of every case of a JSON report.
fn grades_of(report: &serde_json::Value) -> Vec<(String, String)> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["grade"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The report entry of case `id`.
fn case<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {report:#}"))
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
    let code = run_with(
        &srv.addr.to_string(),
        ADMIN,
        examples.path(),
        out.path(),
        &["--suite", "mupdate", "--json", json.to_str().unwrap()],
    )
    .await;
    let report = read_json(&json);
    assert_eq!(code, 0, "{report:#}");
    let grades = grades_of(&report);
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
    let bundles = dir.path().join("b");
    let addr = srv.addr.to_string();
    let code = run_with(
        &addr,
        ADMIN,
        dir.path(),
        dir.path(),
        &[
            "--jobs",
            "1",
            "--run-id",
            "00c0de",
            "--json",
            json.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    )
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
    let (scn, out) = (dir.path(), dir.path());
    assert_eq!(
        run_with(&addr, ADMIN, scn, out, &["--json", json.to_str().unwrap()]).await,
        0,
        "a SHOULD failure does not fail the run"
    );
    let report = read_json(&json);
    let logout = case(&report, "mupdate/logout-bye");
    assert_eq!(logout["grade"], "NON-STRICT");
    assert_eq!(logout["failure"]["expected"], "$tag BYE ...");
    // --level must skips the SHOULD case entirely.
    let must = ["--level", "must", "--filter", "logout"];
    assert_eq!(run_with(&addr, ADMIN, scn, out, &must).await, 3);
    // A waiver for a passing case fails the run (the list must shrink).
    let waivers = dir.path().join("waivers");
    std::fs::write(&waivers, "mupdate/reserve-*  known bug\n").unwrap();
    let w = ["--expect-fail", waivers.to_str().unwrap()];
    assert_eq!(run_with(&addr, ADMIN, scn, out, &w).await, 1);
    // A waived failure does not fail the run; the waiver's reason is reported.
    std::fs::write(&waivers, "mupdate/logout-*  answers OK\n").unwrap();
    let w = [
        "--expect-fail",
        waivers.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    assert_eq!(run_with(&addr, ADMIN, scn, out, &w).await, 0);
    let report = read_json(&json);
    assert_eq!(case(&report, "mupdate/logout-bye")["waived"], "answers OK");
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
    let code = run_with(
        &srv.addr.to_string(),
        ADMIN,
        dir.path(),
        dir.path(),
        &[
            "--jobs",
            "1",
            "--timeout",
            "2",
            "--json",
            json.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 1);
    let report = read_json(&json);
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
    let code = run_with(
        &srv.addr.to_string(),
        ("u", "p"),
        examples.path(),
        out.path(),
        &["--json", json.to_str().unwrap()],
    )
    .await;
    let report = read_json(&json);
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
    let out = tempfile::tempdir().unwrap();
    let addr = srv.addr.to_string();
    let code = run_with(&addr, ("u", "wrong"), &scenarios(), out.path(), &[]).await;
    assert_eq!(code, 2);
}
