//! `mupdated`: the MUPDATE (RFC 3656) reference server, master or slave.
//!
//! `mupdated --listen 127.0.0.1:3905 --data DIR --users FILE [--admin NAME]...` runs a master;
//! add `--slave-of HOST:PORT --master-user U --master-password P` for a read-only slave.
//! With `--keytab FILE` (binary built with the cargo feature `gssapi`) it also offers SASL
//! GSSAPI as `mupdate/SERVER-NAME@REALM` from that keytab.
//! `mupdated hash-password` reads a password on stdin and prints an `{ARGON2ID}` passwd-file
//! secret. Logging goes to stderr, filtered by `RUST_LOG` (default `info`): one line per
//! connection opened/closed and per write; protocol bytes at `trace`; never passwords.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use murder_server::auth::{UserDb, hash_password_argon2id};
use murder_server::mupdate::{Backoff, Config, Limits, MasterLink, start};
use murder_server::net;

/// Behaviour notes printed by `--help`.
const AFTER_HELP: &str = "\
Behaviour:
  * Prints `listening on ADDR` on stdout once it accepts connections (useful with port 0).
  * Offers SASL PLAIN and LOGIN (`* AUTH PLAIN LOGIN`), STARTTLS when --tls-cert/--tls-key are
    given, and GSSAPI (Kerberos 5, no security layer) when --keytab is given (binary built with
    the cargo feature `gssapi`): the service principal is mupdate/SERVER-NAME@REALM, a client
    principal user@REALM of the service's realm is user `user`, any other stays `user@REALM`.
    Before AUTHENTICATE every command but AUTHENTICATE, STARTTLS and LOGOUT gets NO.
  * --require-tls: AUTHENTICATE only after STARTTLS (`NO \"TLS required\"` before).
  * After --max-auth-failures failed AUTHENTICATEs (default 3) a connection gets `* BYE`.
  * Lines must end with CRLF; a line ending in a bare LF is answered BAD.
  * Writes are durable (fsync, group commit) before OK. UPDATE streams every committed change
    at once, with every intermediate state; NOOP on a stream is a barrier.
  * A slave (--slave-of) refuses writes with NO, answers new connections after its first
    resynchronisation with the master (or after 10 s, from its last stored state), keeps serving
    its last state while the master is away, and reconnects with exponential backoff.
  * SIGINT/SIGTERM: stop accepting, `* BYE` to every session, close the database.
  * Logging: RUST_LOG (default info); protocol bytes at trace; passwords never logged.";

/// Command line of `mupdated`.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "MUPDATE (RFC 3656) master/slave server",
    args_conflicts_with_subcommands = true,
    after_long_help = AFTER_HELP
)]
struct Cli {
    /// Utility subcommands (the server runs when none is given).
    #[command(subcommand)]
    command: Option<Tool>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3905")]
    listen: SocketAddr,
    /// Directory of the durable mailbox database (created if missing).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Passwd-file of the users who may authenticate (`name:{PLAIN}pw` or `name:{ARGON2ID}...`).
    #[arg(long)]
    users: Option<PathBuf>,
    /// A user allowed to write (ACTIVATE/RESERVE/DEACTIVATE/DELETE) and to act as another user
    /// (PLAIN authzid). Repeatable. Without any, every authenticated user may write.
    #[arg(long = "admin", value_name = "NAME")]
    admins: Vec<String>,
    /// Run as a read-only slave of the master at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    slave_of: Option<String>,
    /// User the slave authenticates as on its master (PLAIN, required); with
    /// `--master-mech GSSAPI` the Kerberos client principal (default: the ccache's).
    #[arg(long)]
    master_user: Option<String>,
    /// SASL mechanism of the slave's link: PLAIN, or GSSAPI (cargo feature `gssapi`; uses the
    /// credential cache KRB5CCNAME or the client keytab KRB5_CLIENT_KTNAME).
    #[arg(long, value_name = "MECH", default_value = "PLAIN")]
    master_mech: String,
    /// GSSAPI service of the master (default: mupdate@HOST of --slave-of).
    #[arg(long, value_name = "SERVICE@HOST")]
    master_service: Option<String>,
    /// Password of --master-user (visible in the process list: prefer --master-password-file).
    #[arg(long, conflicts_with = "master_password_file")]
    master_password: Option<String>,
    /// File whose first line is the password of --master-user.
    #[arg(long)]
    master_password_file: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key enables STARTTLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Host name in the banner (and of the GSSAPI service principal mupdate/HOST).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Kerberos keytab holding mupdate/SERVER-NAME@REALM: offer SASL GSSAPI (needs a binary
    /// built with the cargo feature `gssapi`; sets KRB5_KTNAME; KRB5_CONFIG picks krb5.conf).
    #[arg(long, value_name = "FILE")]
    keytab: Option<PathBuf>,
    /// Longest command line outside literals, in octets (>= 1024).
    #[arg(long, default_value_t = Limits::default().max_line)]
    max_line: usize,
    /// Largest literal, in octets (>= 4096).
    #[arg(long, default_value_t = Limits::default().max_literal)]
    max_literal: usize,
    /// Largest over-limit non-synchronizing literal drained (answered BAD) instead of closing.
    #[arg(long, default_value_t = Limits::default().literal_drain_limit)]
    literal_drain_limit: u64,
    /// Most arguments in one command (>= 3).
    #[arg(long, default_value_t = Limits::default().max_args)]
    max_args: usize,
    /// Longest tag, in octets.
    #[arg(long, default_value_t = Limits::default().max_tag)]
    max_tag: usize,
    /// Most simultaneous connections; more get `* BYE` and are closed.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Most simultaneous connections from one IP address, 127.0.0.1 and ::1 exempt (0: no
    /// limit); more
    /// get `* BYE` and are closed.
    #[arg(long, default_value_t = Limits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Idle timeout in seconds (>= 900, RFC 3656 2).
    #[arg(long, default_value_t = Limits::default().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// Pause before answering a failed AUTHENTICATE, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    auth_failure_delay_ms: u64,
    /// Failed AUTHENTICATEs per connection; the last one's NO is followed by `* BYE` (>= 1).
    #[arg(long, default_value_t = Limits::default().max_auth_failures)]
    max_auth_failures: u32,
    /// Refuse AUTHENTICATE until STARTTLS (needs --tls-cert/--tls-key); the banner lists no
    /// SASL mechanism before TLS.
    #[arg(long, requires = "tls_cert")]
    require_tls: bool,
    /// Changes an UPDATE subscriber may fall behind before it is dropped.
    #[arg(long, default_value_t = Limits::default().subscriber_buffer)]
    subscriber_buffer: usize,
    /// Most writes in one group commit.
    #[arg(long, default_value_t = Limits::default().max_batch)]
    max_batch: usize,
    /// Slave: first reconnection delay in milliseconds (doubles up to --backoff-max-ms).
    #[arg(long, default_value_t = Backoff::default().initial.as_millis() as u64)]
    backoff_initial_ms: u64,
    /// Slave: largest reconnection delay in milliseconds (bounds how late a slave notices
    /// that its master is back).
    #[arg(long, default_value_t = Backoff::default().max.as_millis() as u64)]
    backoff_max_ms: u64,
    /// Deliberate protocol bug (test builds only, cargo feature `faults`). Repeatable.
    #[cfg(feature = "faults")]
    #[arg(long = "fault", value_name = "NAME")]
    faults: Vec<murder_server::mupdate::Fault>,
}

/// Utility subcommands.
#[derive(Debug, Subcommand)]
enum Tool {
    /// Read a password on stdin (one line) and print `{ARGON2ID}...` for a passwd-file.
    HashPassword,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(keytab) = &cli.keytab {
        // SAFETY: no other thread exists yet (the tokio runtime is built below).
        #[allow(unsafe_code)]
        unsafe { murder_server::auth::keytab::use_keytab(keytab) }?;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(Tool::HashPassword) = cli.command {
        let mut password = String::new();
        std::io::stdin().read_to_string(&mut password)?;
        let password = password.trim_end_matches(['\r', '\n']);
        let hash = hash_password_argon2id(password.as_bytes())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
        println!("{{ARGON2ID}}{hash}");
        return Ok(());
    }
    let Some(data) = cli.data.clone() else {
        bail!("--data DIR is required");
    };
    let Some(users) = cli.users.clone() else {
        bail!("--users FILE is required");
    };
    if cli.idle_timeout < 15 * 60 {
        bail!("--idle-timeout must be at least 900 seconds (RFC 3656 section 2)");
    }
    let users = UserDb::load(&users).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut config = Config::new(cli.listen, data, Arc::new(users));
    config.admins = cli.admins.clone();
    config.server_name = cli.server_name.clone();
    #[cfg(feature = "gssapi")]
    if cli.keytab.is_some() {
        let service = format!("mupdate@{}", cli.server_name);
        let acceptor = murder_server::auth::gssapi::GssapiAcceptor::new(&service)
            .map_err(|e| anyhow::anyhow!("GSSAPI service {service}: {e}"))?;
        config.gssapi = Some(acceptor);
    }
    config.require_tls = cli.require_tls;
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        config.tls = Some(net::load_server_config(cert, key)?);
    }
    config.limits = Limits {
        max_line: cli.max_line,
        max_literal: cli.max_literal,
        literal_drain_limit: cli.literal_drain_limit,
        max_tag: cli.max_tag,
        max_args: cli.max_args,
        max_connections: cli.max_connections,
        max_connections_per_ip: cli.max_connections_per_ip,
        idle_timeout: Duration::from_secs(cli.idle_timeout),
        auth_failure_delay: Duration::from_millis(cli.auth_failure_delay_ms),
        max_auth_failures: cli.max_auth_failures,
        subscriber_buffer: cli.subscriber_buffer,
        max_batch: cli.max_batch,
    };
    if let Some(master) = &cli.slave_of {
        let gssapi = cli.master_mech.eq_ignore_ascii_case("GSSAPI");
        if !gssapi && !cli.master_mech.eq_ignore_ascii_case("PLAIN") {
            bail!("--master-mech must be PLAIN or GSSAPI");
        }
        if gssapi && cfg!(not(feature = "gssapi")) {
            bail!("--master-mech GSSAPI needs a mupdated built with the cargo feature `gssapi`");
        }
        if !gssapi && cli.master_user.is_none() {
            bail!("--slave-of needs --master-user");
        }
        let password = match (&cli.master_password, &cli.master_password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            (None, None) if gssapi => String::new(),
            (None, None) => bail!("--slave-of needs --master-password or --master-password-file"),
        };
        let mut link = MasterLink::new(
            master.clone(),
            cli.master_user.clone().unwrap_or_default(),
            password,
        );
        #[cfg(feature = "gssapi")]
        if gssapi {
            let host = master.rsplit_once(':').map_or(master.as_str(), |(h, _)| h);
            link.gssapi_service = Some(
                cli.master_service
                    .clone()
                    .unwrap_or_else(|| format!("mupdate@{host}")),
            );
        }
        link.backoff = Backoff {
            initial: Duration::from_millis(cli.backoff_initial_ms),
            max: Duration::from_millis(cli.backoff_max_ms),
        };
        config.slave_of = Some(link);
    }
    #[cfg(feature = "faults")]
    {
        config.faults = cli.faults.iter().copied().collect();
    }
    let mut termination = net::signal::termination()?;
    let handle = start(config).await?;
    // Scripts read this line to learn the port when --listen used port 0.
    println!("listening on {}", handle.local_addr());
    termination.recv().await;
    handle.shutdown().await;
    Ok(())
}
