//! The live progress line on stderr (only when stderr is a terminal): the current phase, units
//! done and errors, redrawn twice a second.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Redraw interval of the progress line.
pub const REDRAW: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct State {
    phase: Mutex<String>,
    done: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// Handle to the progress line; cheap to clone into tasks.
#[derive(Debug, Clone)]
pub struct Progress {
    state: Arc<State>,
    visible: bool,
}

impl Progress {
    /// A progress line, drawn only when `visible` (stderr is a terminal).
    pub fn new(visible: bool) -> Progress {
        let p = Progress {
            state: Arc::new(State::default()),
            visible,
        };
        if visible {
            let st = p.state.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                while !st.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(REDRAW);
                    let phase = st.phase.lock().map(|g| g.clone()).unwrap_or_default();
                    eprint!(
                        "\r\x1b[K{:>6.1}s  {phase}  done {}  errors {}",
                        started.elapsed().as_secs_f64(),
                        st.done.load(Ordering::Relaxed),
                        st.errors.load(Ordering::Relaxed)
                    );
                    let _ = std::io::stderr().flush();
                }
            });
        }
        p
    }

    /// A hidden progress line (tests).
    pub fn hidden() -> Progress {
        Progress::new(false)
    }

    /// Start a new phase (counters restart).
    pub fn phase(&self, name: &str) {
        if let Ok(mut g) = self.state.phase.lock() {
            *g = name.to_string();
        }
        self.state.done.store(0, Ordering::Relaxed);
        self.state.errors.store(0, Ordering::Relaxed);
    }

    /// Count done units.
    pub fn add(&self, n: u64) {
        self.state.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Count an error.
    pub fn error(&self) {
        self.state.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Stop drawing and clear the line.
    pub fn finish(&self) {
        self.state.stop.store(true, Ordering::Relaxed);
        if self.visible {
            eprint!("\r\x1b[K");
        }
    }
}
