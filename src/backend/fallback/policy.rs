//! [`FallbackPolicy`]: what a [`FallbackBackend`](super::FallbackBackend) does with an op its GPU
//! lacks.

/// What a [`FallbackBackend`](super::FallbackBackend) does with an op its GPU backend does not
/// support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FallbackPolicy {
    /// Forward it to the CPU backend without a word (the report still counts it).
    Silent,
    /// Forward it, and log one warning per op and backend through the `log` crate (default).
    #[default]
    Warn,
    /// Refuse: return [`Error::FallbackDenied`](crate::Error::FallbackDenied). For CI runs that must prove nothing falls back.
    Deny,
}

impl FallbackPolicy {
    /// The policy's lower-case name, as the report prints it.
    pub const fn name(self) -> &'static str {
        match self {
            FallbackPolicy::Silent => "silent",
            FallbackPolicy::Warn => "warn",
            FallbackPolicy::Deny => "deny",
        }
    }
}

impl std::fmt::Display for FallbackPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
