//! The reference servers started in-process when no `--target` is given: `mupdated` (a master,
//! and a slave of it for the cases that need one) and `imapd` on 127.0.0.1:0 with temporary data directories, generated users (`admin`, `user2`
//! with random passwords) and a generated TLS certificate (STARTTLS offered). This module is the
//! only place that links `murder-server`; judging never uses it.

use std::net::SocketAddr;
use std::sync::Arc;

use murder_server::auth::UserDb;
use murder_server::net::tls::TestPki;

use crate::cli::{Options, SuitePlan, run_plans};
use crate::report::{EXIT_NO_CASE, EXIT_USAGE};
use crate::run::probe::probe;
use crate::run::suite::Selected;
use crate::run::{RunConfig, Target, TlsMode, tls};
use crate::scenario::names::Credentials;
use crate::scenario::{Need, Protocol, Scenario};

/// How long the embedded slave may take to greet (its first synchronisation, bounded by its own
/// 10 s ready timeout).
pub const SLAVE_READY: std::time::Duration = std::time::Duration::from_secs(15);

/// Why the embedded servers could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// Anything on the way (temp dir, users, TLS, bind).
    #[error("cannot start the embedded reference servers: {0}")]
    Start(String),
}

/// The two running reference servers and what the runner needs to reach them.
pub struct Embedded {
    /// `mupdated` (master).
    pub mupdate: murder_server::mupdate::ServerHandle,
    /// `mupdated` as a read-only slave of `mupdate` (for the cases that need a slave).
    pub slave: murder_server::mupdate::ServerHandle,
    /// `imapd`.
    pub imap: murder_server::imap::ServerHandle,
    /// Generated credentials.
    pub creds: Credentials,
    /// Client TLS configuration trusting the generated certificate.
    pub client_tls: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

fn random_password() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Start both servers, correct.
pub async fn start() -> Result<Embedded, EmbeddedError> {
    start_with(
        murder_server::mupdate::Faults::default(),
        murder_server::imap::Faults::default(),
    )
    .await
}

/// Start both servers, correct, with their data in a temporary directory on disk (not tmpfs), so
/// that their fsyncs are real (`conformance bench`).
pub async fn start_on_disk() -> Result<Embedded, EmbeddedError> {
    start_in(
        murder_server::mupdate::Faults::default(),
        murder_server::imap::Faults::default(),
        false,
    )
    .await
}

/// Start both servers with deliberate bugs (the mutant tests that prove the corpus can fail).
pub async fn start_with(
    mupdate_faults: murder_server::mupdate::Faults,
    imap_faults: murder_server::imap::Faults,
) -> Result<Embedded, EmbeddedError> {
    start_in(mupdate_faults, imap_faults, true).await
}

async fn start_in(
    mupdate_faults: murder_server::mupdate::Faults,
    imap_faults: murder_server::imap::Faults,
    in_memory: bool,
) -> Result<Embedded, EmbeddedError> {
    let err = |e: &dyn std::fmt::Display| EmbeddedError::Start(e.to_string());
    // Conformance data is throw-away: keep it in memory when the system offers a tmpfs, so the
    // servers' fsyncs cost nothing.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if in_memory && shm.is_dir() {
        tempfile::Builder::new()
            .prefix("conformance-")
            .tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .map_err(|e| err(&e))?;
    let (p1, p2) = (random_password(), random_password());
    let users = Arc::new(
        UserDb::parse(&format!("admin:{{PLAIN}}{p1}\nuser2:{{PLAIN}}{p2}\n"))
            .map_err(|e| err(&e))?,
    );
    let pki = TestPki::new(&["localhost"]).map_err(|e| err(&e))?;
    let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut mc =
        murder_server::mupdate::Config::new(any, dir.path().join("mupdate"), users.clone());
    mc.admins = vec!["admin".to_string()];
    mc.tls = Some(pki.server_config());
    mc.faults = mupdate_faults.clone();
    let mupdate = murder_server::mupdate::start(mc)
        .await
        .map_err(|e| err(&e))?;
    let mut sc = murder_server::mupdate::Config::new(any, dir.path().join("slave"), users.clone());
    sc.admins = vec!["admin".to_string()];
    sc.tls = Some(pki.server_config());
    sc.faults = mupdate_faults;
    sc.slave_of = Some(murder_server::mupdate::MasterLink::new(
        mupdate.local_addr().to_string(),
        "admin",
        p1.clone(),
    ));
    let slave = murder_server::mupdate::start(sc)
        .await
        .map_err(|e| err(&e))?;
    let mut ic = murder_server::imap::Config::new(any, dir.path().join("imap"), users);
    ic.tls = Some(pki.server_config());
    ic.faults = imap_faults;
    let imap = murder_server::imap::start(ic).await.map_err(|e| err(&e))?;
    Ok(Embedded {
        mupdate,
        slave,
        imap,
        creds: Credentials {
            user: Some(("admin".into(), p1)),
            user2: Some(("user2".into(), p2)),
        },
        client_tls: pki.client_config(),
        _dir: dir,
    })
}

/// Start both reference servers and run the selected cases of both suites against them.
pub async fn run_embedded(o: &Options, cfg: RunConfig, selected: Vec<Arc<Scenario>>) -> i32 {
    let emb = match start().await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("conformance: {e}");
            return EXIT_USAGE;
        }
    };
    let code = run_against(o, cfg, selected, &emb).await;
    emb.shutdown().await;
    code
}

impl Embedded {
    /// Stop every server.
    pub async fn shutdown(self) {
        self.slave.shutdown().await;
        self.mupdate.shutdown().await;
        self.imap.shutdown().await;
    }
}

/// Run the selected cases of both suites against running embedded servers.
pub async fn run_against(
    o: &Options,
    mut cfg: RunConfig,
    selected: Vec<Arc<Scenario>>,
    emb: &Embedded,
) -> i32 {
    cfg.creds = emb.creds.clone();
    let Some(server_name) = tls::server_name("localhost") else {
        return EXIT_USAGE;
    };
    let mut plans = Vec::new();
    let needs_slave = |s: &Scenario| s.meta.needs.contains(&Need::Slave);
    let plain = |addr: std::net::SocketAddr, master: Option<Box<Target>>| Target {
        addr: addr.to_string(),
        tls_mode: TlsMode::Plain,
        tls: emb.client_tls.clone(),
        server_name: server_name.clone(),
        login: crate::run::LoginMech::Plain,
        master,
    };
    for (protocol, addr, slave) in [
        (Protocol::Mupdate, emb.mupdate.local_addr(), false),
        (Protocol::Mupdate, emb.slave.local_addr(), true),
        (Protocol::Imap, emb.imap.local_addr(), false),
    ] {
        let cases: Vec<Arc<Scenario>> = selected
            .iter()
            .filter(|s| s.meta.protocol == protocol && needs_slave(s) == slave)
            .cloned()
            .collect();
        if cases.is_empty() {
            continue;
        }
        // The slave's cases that write on its master (`open NAME master`) reach it here.
        let master = slave.then(|| Box::new(plain(emb.mupdate.local_addr(), None)));
        let target = plain(addr, master);
        // A slave greets once it has synchronised with its master (at most its ready timeout).
        let budget = if slave {
            cfg.timeout.max(SLAVE_READY)
        } else {
            cfg.timeout
        };
        let info = match probe(&target, Some(protocol), &cfg.creds, budget).await {
            Ok(i) => i,
            Err(e) if slave => {
                eprintln!("conformance: embedded slave not ready, its cases are skipped: {e}");
                continue;
            }
            Err(e) => {
                eprintln!("conformance: embedded {protocol} server: {e}");
                return EXIT_USAGE;
            }
        };
        let role = if slave { " slave" } else { "" };
        eprintln!(
            "conformance: embedded {protocol}{role} reference server on {addr} ({} cases)",
            cases.len()
        );
        let offset = plans
            .iter()
            .map(|p: &SuitePlan| p.cases.len())
            .sum::<usize>();
        plans.push(SuitePlan {
            cases: cases
                .into_iter()
                .enumerate()
                .map(|(i, scenario)| Selected {
                    index: offset + i,
                    scenario,
                })
                .collect(),
            target: Arc::new(target),
            info: Arc::new(info),
        });
    }
    if plans.is_empty() {
        return EXIT_NO_CASE;
    }
    run_plans(o, Arc::new(cfg), plans).await
}
