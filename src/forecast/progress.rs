//! A forecast's progress, reported to a caller's callback.

use std::fmt;
use std::sync::Arc;

/// Where a forecast stands: `done` of `total` model passes submitted.
///
/// A pass is one forward call of the model. Toto 1.0 in mean mode makes one per predicted patch;
/// in sample mode one prefill, whose output gives every path's first patch, then one per later
/// patch and sample batch (`1 + batches · (patches − 1)`). Toto 2.0 makes one per decode block
/// (one in all for the default single pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// Passes submitted so far, `1..=total`.
    pub done: usize,
    /// Passes the forecast makes.
    pub total: usize,
}

/// A callback told after each model pass of a forecast ([`Step`]): for a progress bar or a log
/// line while a long forecast, or the first forecast of a process that compiles its GPU kernels,
/// runs. Set it in [`ForecastOptions::progress`](super::ForecastOptions::progress) or with
/// [`ForecastRequest::with_progress`](super::ForecastRequest::with_progress).
///
/// It is called on the forecasting thread once the pass is *submitted*: on a GPU the device may
/// still be computing it, so the steps advance with the host's work — kernel compilation and
/// autotuning included, which is what makes a first forecast slow. The last step (`done ==
/// total`) means every pass was submitted; the forecast's return (or its error) is the end.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use toto_fallback::forecast::Progress;
///
/// let seen = Arc::new(AtomicUsize::new(0));
/// let counter = seen.clone();
/// let progress = Progress::new(move |step| {
///     counter.store(step.done, Ordering::Relaxed);
///     eprintln!("pass {}/{}", step.done, step.total);
/// });
/// # let _ = progress;
/// ```
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(Step) + Send + Sync>);

impl Progress {
    /// A progress callback.
    pub fn new(f: impl Fn(Step) + Send + Sync + 'static) -> Self {
        Progress(Arc::new(f))
    }

    /// A text progress bar on stderr, `label [#####     ] done/total`, redrawn in place and
    /// ended with a newline at the last step; nothing when stderr is not a terminal (a log
    /// file, CI). For a [`Backtest`](crate::eval::Backtest)'s batches or a long forecast's
    /// passes.
    pub fn bar(label: impl Into<String>) -> Self {
        use std::io::{IsTerminal, Write};
        let label = label.into();
        Progress::new(move |step| {
            let mut err = std::io::stderr().lock();
            if !err.is_terminal() || step.total == 0 {
                return;
            }
            const WIDTH: usize = 30;
            let filled = (step.done.min(step.total) * WIDTH) / step.total;
            let _ = write!(
                err,
                "\r{label} [{}{}] {}/{}",
                "#".repeat(filled),
                " ".repeat(WIDTH - filled),
                step.done,
                step.total
            );
            if step.done >= step.total {
                let _ = writeln!(err);
            }
            let _ = err.flush();
        })
    }

    pub(crate) fn report(&self, done: usize, total: usize) {
        (self.0)(Step { done, total });
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// Two callbacks are equal when they are the same one (clones of one `Progress`).
impl PartialEq for Progress {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Counts a forecast's passes and tells the callback, if any.
pub(crate) struct Passes<'a> {
    progress: Option<&'a Progress>,
    done: usize,
    total: usize,
}

impl<'a> Passes<'a> {
    pub(crate) fn new(progress: Option<&'a Progress>, total: usize) -> Self {
        Passes {
            progress,
            done: 0,
            total,
        }
    }

    /// One more pass submitted.
    pub(crate) fn tick(&mut self) {
        self.done += 1;
        if let Some(p) = self.progress {
            p.report(self.done, self.total);
        }
    }
}
