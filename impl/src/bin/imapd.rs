//! `imapd`: IMAP4rev1 subset with MULTIAPPEND, LITERAL+ and UIDPLUS, optionally a Cyrus Murder
//! backend that keeps a MUPDATE master informed of its mailboxes. With `--keytab FILE` (binary
//! built with the cargo feature `gssapi`) it also offers `AUTH=GSSAPI` as
//! `imap/SERVER-NAME@REALM` from that keytab.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use murder_server::imap::{self, Config, MupdateLink, UserDb};

/// IMAP server with MULTIAPPEND (RFC 3502), LITERAL+ (RFC 2088) and UIDPLUS (RFC 4315).
#[derive(Debug, Parser)]
#[command(
    version,
    about = "IMAP4rev1 server with MULTIAPPEND (RFC 3502), LITERAL+ (RFC 2088) and UIDPLUS (RFC 4315); optionally a Cyrus Murder backend"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:143")]
    listen: SocketAddr,
    /// Data directory (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// Password file (`name:{PLAIN}password` or `name:{ARGON2ID}...` lines).
    #[arg(long)]
    users: PathBuf,
    /// PEM certificate chain for STARTTLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse LOGIN/AUTHENTICATE until STARTTLS (advertises LOGINDISABLED).
    #[arg(long)]
    require_tls: bool,
    /// MUPDATE master `host:port`: run as a Murder backend.
    #[arg(long, requires_all = ["mupdate_user", "mupdate_password", "server_name"])]
    mupdate: Option<String>,
    /// SASL PLAIN user for the MUPDATE master.
    #[arg(long)]
    mupdate_user: Option<String>,
    /// SASL PLAIN password for the MUPDATE master.
    #[arg(long)]
    mupdate_password: Option<String>,
    /// After a failed MUPDATE operation or reconcile pass, retry the owed pass this often.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    mupdate_retry_secs: u64,
    /// Run a full reconcile pass with the MUPDATE master this often even when none is owed.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    mupdate_reconcile_secs: u64,
    /// This backend's name in MUPDATE locations (`NAME!default`), and the host of its GSSAPI
    /// service principal imap/NAME@REALM (default `localhost` for GSSAPI).
    #[arg(long)]
    server_name: Option<String>,
    /// Kerberos keytab holding imap/SERVER-NAME@REALM: offer AUTH=GSSAPI (Kerberos 5, no
    /// security layer; needs a binary built with the cargo feature `gssapi`; sets KRB5_KTNAME;
    /// KRB5_CONFIG picks krb5.conf). A client principal user@REALM of the service's realm logs
    /// in as `user`, any other as the full principal. Refuses to start without the key.
    #[arg(long, value_name = "FILE")]
    keytab: Option<PathBuf>,
    /// Close connections idle for this many seconds (RFC 3501: at least 1800).
    #[arg(long, default_value_t = 1800)]
    idle_timeout_secs: u64,
    /// Maximum simultaneous connections.
    #[arg(long, default_value_t = murder_server::net::listener::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Most simultaneous connections from one IP address, 127.0.0.1 and ::1 exempt (0: no
    /// limit).
    #[arg(long, default_value_t = murder_server::net::listener::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    max_connections_per_ip: usize,
    /// Largest APPEND message literal in octets.
    #[arg(long)]
    max_message_size: Option<u64>,
    /// APPENDs whose literals total at most this many octets are buffered in memory and
    /// committed in one index transaction (one fsync); larger ones stream to disk. 0 = always
    /// stream. Worst-case memory is about this times the connection limit.
    #[arg(long, default_value_t = imap::Limits::default().inline_append_limit, value_name = "OCTETS")]
    inline_append_limit: u64,
    /// Write the staging files of large APPENDs through the page cache instead of with direct
    /// I/O (O_DIRECT, the default where the filesystem allows it).
    #[arg(long)]
    no_direct_io: bool,
    /// Failed LOGIN/AUTHENTICATE attempts per connection before `* BYE` and close.
    #[arg(long, default_value_t = imap::Limits::default().max_auth_failures)]
    max_auth_failures: u32,
    /// Deliberate protocol faults for mutant testing (repeatable).
    #[cfg(feature = "faults")]
    #[arg(long = "fault")]
    faults: Vec<imap::Fault>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(keytab) = &args.keytab {
        // SAFETY: no other thread exists yet (the tokio runtime is built below).
        #[allow(unsafe_code)]
        unsafe { murder_server::auth::keytab::use_keytab(keytab) }?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// The acceptor credentials of `imap@HOST` from the keytab `--keytab` made the default.
#[cfg(feature = "gssapi")]
fn gssapi_acceptor(args: &Args) -> anyhow::Result<murder_server::auth::exchange::Acceptor> {
    let host = args.server_name.as_deref().unwrap_or("localhost");
    let service = format!("imap@{host}");
    murder_server::auth::gssapi::GssapiAcceptor::new(&service)
        .with_context(|| format!("GSSAPI service {service}"))
}

/// Without the `gssapi` feature `use_keytab` has already refused `--keytab`.
#[cfg(not(feature = "gssapi"))]
fn gssapi_acceptor(_args: &Args) -> anyhow::Result<murder_server::auth::exchange::Acceptor> {
    bail!("--keytab needs an imapd built with the cargo feature `gssapi`")
}

async fn run(args: Args) -> anyhow::Result<()> {
    let users = UserDb::load(&args.users)
        .with_context(|| format!("loading users from {}", args.users.display()))?;
    let mut config = Config::new(args.listen, args.data.clone(), Arc::new(users));
    if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(
            murder_server::net::load_server_config(c, k).context("loading the TLS certificate")?,
        );
    }
    if args.require_tls && config.tls.is_none() {
        bail!("--require-tls needs --tls-cert and --tls-key");
    }
    config.require_tls = args.require_tls;
    if args.keytab.is_some() {
        config.gssapi = Some(gssapi_acceptor(&args)?);
    }
    if args.idle_timeout_secs < 1800 {
        tracing::warn!("--idle-timeout-secs below RFC 3501's 30 minutes");
    }
    config.limits.idle_timeout = Duration::from_secs(args.idle_timeout_secs);
    config.limits.max_connections = args.max_connections;
    config.limits.max_connections_per_ip = args.max_connections_per_ip;
    config.limits.max_auth_failures = args.max_auth_failures;
    config.limits.inline_append_limit = args.inline_append_limit;
    config.direct_io = !args.no_direct_io;
    if let Some(m) = args.max_message_size {
        config.limits.max_message_size = m;
    }
    if let (Some(addr), Some(user), Some(pw), Some(name)) = (
        args.mupdate.clone(),
        args.mupdate_user.clone(),
        args.mupdate_password.clone(),
        args.server_name.clone(),
    ) {
        let mut link = MupdateLink::new(addr, user, pw, name);
        link.retry_interval = Duration::from_secs(args.mupdate_retry_secs.max(1));
        link.reconcile_interval = Duration::from_secs(args.mupdate_reconcile_secs.max(1));
        config.mupdate = Some(link);
    }
    #[cfg(feature = "faults")]
    {
        config.faults = imap::Faults(args.faults.iter().copied().collect());
    }
    let handle = imap::start(config).await?;
    println!("imapd listening on {}", handle.local_addr());
    murder_server::net::signal::termination()?.recv().await;
    handle.shutdown().await;
    Ok(())
}
