//! A backend's seed and call counter: which random stream each sampling call draws from.

use std::sync::Mutex;

use crate::rng::DrawKey;

/// A seed and a per-call stream counter, shared by every clone of a backend.
#[derive(Debug)]
pub(crate) struct Streams {
    state: Mutex<(u64, u64)>,
}

/// The key of one call's stream: `(seed, call index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamKey {
    pub(crate) seed: u64,
    pub(crate) call: u64,
}

impl StreamKey {
    /// The Philox key of this call ([`crate::rng`]): the seed, and the call number's low word.
    pub(crate) fn draw_key(self) -> DrawKey {
        DrawKey::new(self.seed, self.call as u32)
    }
}

impl Streams {
    pub(crate) fn new(seed: u64) -> Self {
        Streams {
            state: Mutex::new((seed, 0)),
        }
    }

    /// Restarts the call sequence from `seed`.
    pub(crate) fn reseed(&self, seed: u64) {
        *self.lock() = (seed, 0);
    }

    /// The key for the next call; each call gets a distinct one.
    pub(crate) fn next_stream(&self) -> StreamKey {
        let mut state = self.lock();
        let key = StreamKey {
            seed: state.0,
            call: state.1,
        };
        state.1 = state.1.wrapping_add(1);
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, u64)> {
        // The state is two integers written whole: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_count_up_and_reseeding_restarts() {
        let streams = Streams::new(1);
        let a = streams.next_stream();
        let b = streams.next_stream();
        assert_eq!((a.seed, a.call, b.call), (1, 0, 1));
        streams.reseed(2);
        assert_eq!(streams.next_stream(), StreamKey { seed: 2, call: 0 });
    }
}
