//! `conformance`: run the MUPDATE / IMAP MULTIAPPEND conformance corpus against a server
//! (`--target HOST:PORT`), or against the embedded reference servers when no target is given.

use clap::Parser as _;
use conformance::cli::{Cli, main_with};

fn main() {
    let cli = Cli::parse();
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(main_with(cli)),
        Err(e) => {
            eprintln!("conformance: cannot start the runtime: {e}");
            conformance::report::EXIT_USAGE
        }
    };
    std::process::exit(code);
}
