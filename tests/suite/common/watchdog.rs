//! A bound on how long a test may hold the wgpu device: a device operation that never returns
//! (a driver or runtime deadlock) fails the run with the test's name instead of hanging it.
//!
//! Every test that touches wgpu holds the suite's wgpu turn ([`super::wgpu`]), and the turn is
//! a [`Watched`] guard: a watchdog thread checks the holder once a second and, when it has held
//! the device longer than [`bound`], prints which test is stuck and for how long, then aborts
//! the test process. A stuck thread cannot be cancelled, so ending the process is the only way
//! to fail in bounded time; libtest and `cargo test` report the abort as a failed test binary.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The default bound: the slowest wgpu test on a 2-core machine's software adapters
/// (lavapipe, llvmpipe) takes about a minute; five times that is still stuck, not slow.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(300);

/// The bound, from `TOTO_TEST_DEVICE_TIMEOUT_SECS` when it holds a positive number of seconds.
pub fn bound() -> Duration {
    std::env::var("TOTO_TEST_DEVICE_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(DEFAULT_BOUND, Duration::from_secs)
}

/// The test holding the device, and since when.
static HOLDER: Mutex<Option<(String, Instant)>> = Mutex::new(None);

/// Marks the current test as holding the device until dropped.
pub struct Watched(());

impl Watched {
    pub fn start() -> Self {
        start_watchdog();
        let name = std::thread::current()
            .name()
            .unwrap_or("a test on an unnamed thread")
            .to_owned();
        *HOLDER.lock().unwrap_or_else(|e| e.into_inner()) = Some((name, Instant::now()));
        Watched(())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        *HOLDER.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn start_watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let bound = bound();
        std::thread::Builder::new()
            .name("wgpu-test-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let holder = HOLDER.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    if let Some((name, since)) = holder
                        && since.elapsed() > bound
                    {
                        stuck(&name, since.elapsed(), bound);
                    }
                }
            })
            .expect("the watchdog thread starts");
    });
}

/// Says which test is stuck and ends the process.
fn stuck(name: &str, held: Duration, bound: Duration) -> ! {
    eprintln!(
        "\nFAILED (stuck device): test `{name}` has held the wgpu device for {:.0} s, over the \
         bound of {} s (TOTO_TEST_DEVICE_TIMEOUT_SECS): a device operation never returned. \
         Aborting the test process so that the run fails instead of hanging.",
        held.as_secs_f64(),
        bound.as_secs()
    );
    std::process::abort()
}
