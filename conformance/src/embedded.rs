//! The reference servers started in-process when no `--target` is given: `mupdated` and `imapd`
//! on 127.0.0.1:0 with temporary data directories and generated users. This module is the only
//! place that links `murder-server`; judging never uses it.

use std::sync::Arc;

use crate::cli::Options;
use crate::report::EXIT_USAGE;
use crate::run::RunConfig;
use crate::scenario::Scenario;

/// Start both reference servers and run the selected cases of both suites against them.
pub async fn run_embedded(_o: &Options, _cfg: RunConfig, _selected: Vec<Arc<Scenario>>) -> i32 {
    eprintln!(
        "conformance: no --target given and the embedded reference servers are not wired up yet; \
         run with --target HOST:PORT"
    );
    EXIT_USAGE
}
