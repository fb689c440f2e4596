//! Profiling of a model's phases at `trace` log level.

/// Wall time per phase, logged at `trace` level under `target`. The device is synchronised
/// before each reading (so the time belongs to the phase), which stalls the queue: only when
/// trace logging is on for `target`.
pub(crate) struct Phases {
    target: &'static str,
    device: Option<burn::tensor::Device>,
    last: std::time::Instant,
}

impl Phases {
    pub(crate) fn new(target: &'static str, device: &burn::tensor::Device) -> Self {
        let on = log::log_enabled!(target: target, log::Level::Trace);
        Phases {
            target,
            device: on.then(|| device.clone()),
            last: std::time::Instant::now(),
        }
    }

    pub(crate) fn mark(&mut self, phase: impl FnOnce() -> String) {
        if let Some(device) = &self.device {
            let _ = device.sync();
            let now = std::time::Instant::now();
            log::trace!(
                target: self.target,
                "{}: {:.2} ms",
                phase(),
                (now - self.last).as_secs_f64() * 1e3
            );
            self.last = now;
        }
    }
}
