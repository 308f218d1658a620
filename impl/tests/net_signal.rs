//! `net::signal::termination` sees a SIGTERM sent to the test process (its own binary, so the
//! signal cannot disturb other tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use murder_server::net::signal::termination;

#[tokio::test]
async fn sigterm_completes_termination() {
    let mut t = termination().unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {}", std::process::id()))
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), t.recv())
        .await
        .expect("SIGTERM was not delivered");
}
