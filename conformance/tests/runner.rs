//! The runner end to end against a small fake MUPDATE server (tests/support): the example
//! scenarios pass, deliberate bugs fail with explained reports, a crash turns the rest NOT-RUN,
//! and the exit codes hold (0, 1, 2, 3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod report;
mod support;

use std::path::{Path, PathBuf};

use clap::Parser as _;
use conformance::cli::{Cli, main_with};
use report::{case, grades_of, read_json};
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
async fn exit_code_3_when_every_selected_case_is_not_applicable() {
    // The embedded servers offer no GSSAPI and the runner logs in with PLAIN: the one selected
    // case is N/A, so nothing was judged and the gate must not pass.
    assert_eq!(
        run(&[
            "--scenarios",
            scenarios().to_str().unwrap(),
            "--filter",
            "mupdate/auth-gssapi-login",
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

/// The embedded reference master and its slave: the cases that write on the master and look on
/// the slave run with `--master` (and pass), are N/A without it or against a master, and an
/// unreachable `--master` is a usage error (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_flag_runs_the_master_slave_cases() {
    let emb = conformance::embedded::start().await.unwrap();
    let (user, pass) = emb.creds.user.clone().unwrap();
    let creds = (user.as_str(), pass.as_str());
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("r.json");
    let slave = emb.slave.local_addr().to_string();
    let master = emb.mupdate.local_addr().to_string();
    let ids = [
        "mupdate/slave-update-cascade",
        "mupdate/slave-update-cascade-noop",
        "mupdate/slave-find-after-cascade",
        "mupdate/slave-write-not-forwarded",
    ];
    // The slave greets once synchronised with its master: a generous probe timeout.
    let base = [
        "--filter",
        "mupdate/slave-*",
        "--timeout",
        "15",
        "--json",
        json.to_str().unwrap(),
    ];
    let mut with_master = base.to_vec();
    with_master.extend(["--master", &master]);
    let code = run_with(&slave, creds, &scenarios(), out.path(), &with_master).await;
    let report = read_json(&json);
    assert_eq!(code, 0, "{report:#}");
    for id in ids {
        assert_eq!(case(&report, id)["grade"], "PASS", "{report:#}");
    }
    assert_eq!(case(&report, "mupdate/slave-find")["grade"], "PASS");

    let code = run_with(&slave, creds, &scenarios(), out.path(), &base).await;
    assert_eq!(code, 0);
    let report = read_json(&json);
    for id in ids {
        let c = case(&report, id);
        assert_eq!(c["grade"], "N/A", "{c:#}");
        assert!(c["reason"].as_str().unwrap().contains("--master"), "{c:#}");
    }
    // Against the master itself the slave cases are N/A (the target is no slave).
    let mut on_master = base.to_vec();
    on_master.extend(["--master", &master]);
    run_with(&master, creds, &scenarios(), out.path(), &on_master).await;
    let report = read_json(&json);
    for id in ids {
        assert_eq!(case(&report, id)["grade"], "N/A");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = format!("127.0.0.1:{port}");
    let mut bad = base.to_vec();
    bad.extend(["--master", &gone]);
    assert_eq!(
        run_with(&slave, creds, &scenarios(), out.path(), &bad).await,
        2
    );
    emb.shutdown().await;
}

fn fmt_case(name: &str, needs: &str, body: &str) -> (String, String) {
    (
        format!("mupdate/{name}.scn"),
        format!(
            "id: mupdate/{name}\ntitle: t\nprotocol: mupdate\nrfc: RFC3656 4.8\nlevel: MUST\nneeds: {needs}\n[test]\n{body}"
        ),
    )
}

/// `lacks` (with its NOOP barrier draining queued lines), `last`, `or closed` and `nocap:`
/// against the embedded reference master: each construct passes and fails where it should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lacks_last_or_closed_and_nocap_at_run_time() {
    let emb = conformance::embedded::start().await.unwrap();
    let (user, pass) = emb.creds.user.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipelined = "open c\nc >> N1 NOOP\\r\\nN2 NOOP\\r\\n\nc < N1 OK ...\n";
    let one = "open c\nc > N1 NOOP\nc < $tag OK ...\n";
    let cases = [
        // (name, needs, body, expected grade)
        ("lacks-pass", "admin", format!("{pipelined}lacks c N3 ...\n"), "PASS"),
        // N2's OK was queued, unread: the barrier drains it and `lacks` sees it.
        ("lacks-drained", "admin", format!("{pipelined}lacks c N2 OK ...\n"), "FAIL"),
        ("last-pass", "admin", format!("{one}last c N1 OK ...\n"), "PASS"),
        ("last-fail", "admin", format!("{one}last c N1 BAD ...\n"), "FAIL"),
        (
            "or-closed-closes",
            "plaintext",
            "open c noauth\nc > L1 LOGOUT\nc < $tag BYE ...\nc < * NEVER ... or closed\nc << * NEVER ... or closed\nc closed\n".to_string(),
            "PASS",
        ),
        ("or-closed-line", "admin", "open c\nc > N1 NOOP\nc < $tag OK ... or closed\nc silent\n".to_string(), "PASS"),
        ("or-closed-mismatch", "admin", "open c\nc > N1 NOOP\nc < $tag BAD ... or closed\n".to_string(), "FAIL"),
        ("nocap-absent", "nocap:NO-SUCH-EXTENSION", "open c noauth\nc silent\n".to_string(), "PASS"),
        ("nocap-present", "nocap:STARTTLS", "open c noauth\nc silent\n".to_string(), "N/A"),
    ];
    let files: Vec<(String, String)> = cases
        .iter()
        .map(|(n, needs, body, _)| fmt_case(n, needs, body))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    write_scenarios(dir.path(), &refs);
    let json = dir.path().join("r.json");
    let master = emb.mupdate.local_addr().to_string();
    let code = run_with(
        &master,
        (&user, &pass),
        dir.path(),
        dir.path(),
        &["--timeout", "2", "--json", json.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 1);
    let report = read_json(&json);
    for (name, _, _, grade) in &cases {
        let c = case(&report, &format!("mupdate/{name}"));
        assert_eq!(c["grade"], *grade, "{c:#}");
    }
    let drained = case(&report, "mupdate/lacks-drained");
    let msg = drained["failure"]["message"].as_str().unwrap();
    assert!(msg.contains("must not arrive"), "{drained:#}");
    let got = drained["failure"]["got"].as_str().unwrap();
    assert!(got.starts_with("N2 OK"), "{drained:#}");
    let last = case(&report, "mupdate/last-fail");
    assert!(
        last["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("last line of c"),
        "{last:#}"
    );
    emb.shutdown().await;
}

/// A fake IMAP server for stalled writes: it answers every complete line with OK, except that a
/// command whose second word is `STALL` gets a tagged BAD and `HANG` nothing, after which the
/// server never reads from that connection again (its socket stays open).
async fn stalling_imap() -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"* OK [CAPABILITY IMAP4rev1] stall\r\n").await;
                let mut buf: Vec<u8> = Vec::new();
                let mut chunk = vec![0u8; 4096];
                loop {
                    while let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                        let line: Vec<u8> = buf.drain(..i + 2).collect();
                        let text = String::from_utf8_lossy(&line).to_string();
                        let mut w = text.split_whitespace();
                        let tag = w.next().unwrap_or("*").to_string();
                        let cmd = w.next().unwrap_or("").to_ascii_uppercase();
                        let reply = match cmd.as_str() {
                            "CAPABILITY" => format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"),
                            "LOGOUT" => format!("* BYE bye\r\n{tag} OK done\r\n"),
                            _ => format!("{tag} OK done\r\n"),
                        };
                        let _ = s.write_all(reply.as_bytes()).await;
                        if cmd == "LOGOUT" {
                            return;
                        }
                    }
                    let text = String::from_utf8_lossy(buf.get(..buf.len().min(64)).unwrap());
                    let words: Vec<&str> = text.split(' ').collect();
                    if words.len() > 2 && (words[1] == "STALL" || words[1] == "HANG") {
                        if words[1] == "STALL" {
                            let _ = s
                                .write_all(format!("{} BAD too long\r\n", words[0]).as_bytes())
                                .await;
                        }
                        // Never read again; keep the socket open.
                        std::future::pending::<()>().await;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, task)
}

/// A server that stops reading in the middle of a large send does not hang the runner: the
/// send is noted ("server stopped reading after N of M bytes"), the server's BAD is judged as
/// the scenario says, and when no answer comes the failure says the server stopped reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_write_is_judged_not_hung() {
    let (addr, task) = stalling_imap().await;
    let dir = tempfile::tempdir().unwrap();
    // 16 MiB: more than loopback socket buffers take (about 4 MiB here).
    let big = "${repeat:16777216:a}";
    let head = |id: &str| {
        format!(
            "id: imap/{id}\ntitle: t\nprotocol: imap\nrfc: RFC3501 4.3\nlevel: ROBUSTNESS\n[test]\nopen c noauth\n"
        )
    };
    let answered = format!(
        "{}c > S1 STALL {big}\nc < $tag BAD ... or closed\n",
        head("stall-answered")
    );
    let silent = format!(
        "{}c > H1 HANG {big}\nc < $tag BAD ... or closed\n",
        head("stall-silent")
    );
    write_scenarios(
        dir.path(),
        &[
            ("imap/stall-answered.scn", &answered),
            ("imap/stall-silent.scn", &silent),
        ],
    );
    let json = dir.path().join("r.json");
    let code = run_with(
        &addr,
        ("u", "p"),
        dir.path(),
        dir.path(),
        &["--timeout", "1", "--json", json.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 1);
    let report = read_json(&json);
    let ok = case(&report, "imap/stall-answered");
    assert_eq!(ok["grade"], "PASS", "{ok:#}");
    let bad = case(&report, "imap/stall-silent");
    assert_eq!(bad["grade"], "FAIL", "{bad:#}");
    let msg = bad["failure"]["message"].as_str().unwrap();
    assert!(msg.contains("server stopped reading after"), "{msg}");
    assert!(msg.contains("of 16777226 bytes"), "{msg}");
    let transcript = bad["transcript_text"].as_str().unwrap();
    assert!(
        transcript.contains("server stopped reading after"),
        "{transcript}"
    );
    task.abort();
}
