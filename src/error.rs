//! The crate's error type.
//!
//! One layer above the leaves: it names an [`Op`] or a wgpu adapter request, and every other
//! module returns it.

#[cfg(feature = "wgpu")]
use crate::adapter::{AdapterKind, GraphicsApi};
use crate::op::Op;

/// An underlying error kept as the source of ours.
pub type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in this crate, each variant saying what to change.
///
/// Nothing in the public API panics on bad input: shapes, devices, adapters and policies are
/// checked and reported here. Bad *values* inside tensors (a negative concentration, a NaN) are
/// not errors: reading them would force a device sync, so they produce NaN element-wise, as in
/// torch; each op documents what it returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend does not run `op` natively: the analogue of torch's
    /// `NotImplementedError: aten::_standard_gamma` on Apple GPUs.
    #[error(
        "`{op}` is not supported by the {backend} backend; wrap it in \
         `FallbackBackend::new(gpu, NdArray::new())` to run `{op}` on the CPU, \
         or use a backend that supports it"
    )]
    Unsupported {
        /// The operation that was asked for.
        op: Op,
        /// The backend's name.
        backend: String,
    },

    /// A [`FallbackBackend`](crate::FallbackBackend) with
    /// [`FallbackPolicy::Deny`](crate::FallbackPolicy::Deny) was asked for an op its GPU lacks.
    #[error(
        "`{op}` is not supported by {gpu} and the fallback policy is `Deny`, so it was not \
         forwarded to {cpu}; use `FallbackPolicy::Warn` or `FallbackPolicy::Silent` to allow it"
    )]
    FallbackDenied {
        /// The operation that was asked for.
        op: Op,
        /// The primary (GPU) backend's name.
        gpu: String,
        /// The fallback (CPU) backend's name.
        cpu: String,
    },

    /// Neither backend of a [`FallbackBackend`](crate::FallbackBackend) runs `op`.
    #[error(
        "`{op}` is supported neither by {gpu} nor by its fallback {cpu}; \
         use a fallback backend that supports it (`NdArray` runs every op)"
    )]
    UnsupportedEverywhere {
        /// The operation that was asked for.
        op: Op,
        /// The primary (GPU) backend's name.
        gpu: String,
        /// The fallback (CPU) backend's name.
        cpu: String,
    },

    /// A tensor argument lives on another device than the backend, distribution or model it
    /// was given to.
    #[error(
        "{what}: argument `{param}` is on device {found} but {what} runs on {expected}; create \
         it on that device or move it with `tensor.to_device(backend.device())`"
    )]
    DeviceMismatch {
        /// The op (`standard_gamma`), distribution (`StudentT`) or function (`Toto::forecast`).
        what: &'static str,
        /// The argument's name.
        param: &'static str,
        /// The device it must be on.
        expected: String,
        /// The argument's device.
        found: String,
    },

    /// A request asks for a tensor of more elements than one tensor may hold, or whose element
    /// count overflows: refused before anything is allocated.
    #[error(
        "{what}: a tensor of shape {shape:?} would hold {elements} elements, more than the \
         {limit} one tensor may hold; {fix}"
    )]
    TooLarge {
        /// The op, distribution or function, and which of its tensors.
        what: &'static str,
        /// The shape (for an estimate, the factors of its element count).
        shape: Vec<usize>,
        /// The element count (saturated at `u128::MAX` on overflow).
        elements: u128,
        /// The largest element count accepted ([`MAX_ELEMENTS`](crate::MAX_ELEMENTS)).
        limit: u64,
        /// What would make it fit.
        fix: &'static str,
    },

    /// No wgpu adapter matched the request, or the adapter refused to create a device.
    #[cfg(feature = "wgpu")]
    #[error(
        "no usable wgpu adapter ({api:?}, {adapter:?}): {source}. On a machine without a GPU \
         install a software Vulkan driver (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`) \
         and select `AdapterKind::Cpu`, or use the CPU backend `NdArray::new()`"
    )]
    NoAdapter {
        /// The requested graphics API.
        api: GraphicsApi,
        /// The requested adapter.
        adapter: AdapterKind,
        /// What wgpu said.
        #[source]
        source: Box<burn::tensor::wgpu::WgpuInitError>,
    },

    /// The only wgpu adapter for the request runs on OpenGL, which this crate does not use:
    /// wgpu's GL backend can deadlock under CubeCL's kernel autotuning (docs/troubleshooting.md,
    /// "OpenGL").
    #[cfg(feature = "wgpu")]
    #[error(
        "the only wgpu adapter for {adapter:?} is `{name}` on OpenGL, which toto-fallback does \
         not use (wgpu's OpenGL backend can deadlock under CubeCL's autotuning; \
         docs/troubleshooting.md, \"OpenGL\"). Install the GPU's Vulkan driver or use the CPU \
         backend `NdArray::new()` (on a machine without a GPU, a build with \
         `default-features = false, features = [\"portable\"]` also runs on Mesa's software Vulkan: \
         `apt-get install mesa-vulkan-drivers`)"
    )]
    OpenGlOnly {
        /// The requested adapter.
        adapter: AdapterKind,
        /// The OpenGL adapter's name, as its driver gives it.
        name: String,
    },

    /// The adapter is a software rasterizer on Vulkan (Mesa's lavapipe) and this build compiles
    /// kernels to SPIR-V (the `vulkan` feature, on by default), which lavapipe crashes on
    /// (docs/troubleshooting.md, "lavapipe and SPIR-V").
    #[cfg(feature = "wgpu")]
    #[error(
        "{name} for {adapter:?} is a software Vulkan adapter, and this build compiles kernels \
         to SPIR-V (the `vulkan` feature, on by default), which Mesa's lavapipe crashes on \
         (docs/troubleshooting.md, \"lavapipe and SPIR-V\"). Use the CPU backend \
         (`NdArray::new()`, faster than a software GPU on the same cores), or build with \
         `default-features = false, features = [\"portable\"]` to run wgpu on lavapipe through WGSL"
    )]
    SoftwareSpirv {
        /// The requested adapter.
        adapter: AdapterKind,
        /// The backend's name for the adapter (its driver's name and the compiler).
        name: String,
    },

    /// A distribution's parameters do not broadcast to one batch shape.
    #[error(
        "{dist}: parameter `{param}` has shape {shape:?}, which does not broadcast with the \
         other parameters' shape {batch:?}; give every parameter the same shape or size-1 \
         dimensions where they differ"
    )]
    ParamShape {
        /// The distribution.
        dist: &'static str,
        /// The parameter.
        param: &'static str,
        /// The parameter's shape.
        shape: Vec<usize>,
        /// The broadcast shape of the parameters before it.
        batch: Vec<usize>,
    },

    /// A parameter holds a value outside its domain (found by an explicit `validate()`).
    #[error("{dist}: parameter `{param}` {requirement}, but element {index} is {value}")]
    ParamValue {
        /// The distribution.
        dist: &'static str,
        /// The parameter.
        param: &'static str,
        /// What the parameter must satisfy, e.g. "must be > 0 and finite".
        requirement: &'static str,
        /// The flat index of the first offending element.
        index: usize,
        /// Its value.
        value: f32,
    },

    /// The output rank asked for does not fit the shapes involved.
    #[error(
        "{dist}: {what} has rank {needed} (sample shape length plus batch rank), but the \
         result was asked for as `Tensor<{asked}>`; annotate it as `Tensor<{needed}>`"
    )]
    Rank {
        /// The distribution.
        dist: &'static str,
        /// What the rank belongs to ("the sample", "the value").
        what: &'static str,
        /// The rank the shapes give.
        needed: usize,
        /// The rank the caller's type asked for.
        asked: usize,
    },

    /// A value tensor does not broadcast with the distribution's batch shape.
    #[error(
        "{dist}: value of shape {shape:?} does not broadcast with the batch shape {batch:?}; \
         its trailing dimensions must equal the batch shape's or be 1"
    )]
    ValueShape {
        /// The distribution.
        dist: &'static str,
        /// The value's shape.
        shape: Vec<usize>,
        /// The distribution's batch shape.
        batch: Vec<usize>,
    },

    /// Reading a tensor back from a device failed (the device was lost, ran out of memory, or
    /// refused an allocation the result depends on).
    #[error("{what}: reading tensor data back from {device} failed: {source}")]
    ReadBack {
        /// What was reading (an op such as `standard_gamma`, or a `validate()`), and what to do
        /// if the reason is an allocation.
        what: String,
        /// The device that was read.
        device: String,
        /// What burn said.
        #[source]
        source: Box<burn::tensor::TensorReadError>,
    },

    /// A Toto `config.json` key or value is wrong.
    #[error("Toto config: `{field}`: {reason}")]
    Config {
        /// The key (or `config.json` when the text does not parse).
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
        /// The parser's error, when the text did not parse.
        #[source]
        source: Option<BoxedSource>,
    },

    /// A `config.json` of one Toto generation was given to the other's loader.
    #[error(
        "this config.json is {found}'s (it has `{key}`), which {loader} cannot read: load it \
         with {instead}, or with AutoToto::from_dir, which reads either generation"
    )]
    WrongGeneration {
        /// The generation the config is (`Toto 1.0`, `Toto 2.0`).
        found: &'static str,
        /// The key that shows it (`embed_dim`, `d_model`).
        key: &'static str,
        /// The loader that was called (`Toto2Config::from_json`, ...).
        loader: &'static str,
        /// The loader of `found`'s configs.
        instead: &'static str,
    },

    /// A long-format table has a problem at a row and column (features `csv`, `arrow`,
    /// `parquet`).
    #[error("table{}, column `{column}`: {reason}", .row.map(|r| format!(" row {r}")).unwrap_or_default())]
    Table {
        /// Where the problem has a row: in CSV the line in the file (the header is line 1); in
        /// Arrow record batches and Parquet the row's index in the data, from 0.
        row: Option<usize>,
        /// The column's name as the header spells it (or the role looked for).
        column: String,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// A file could not be read or written.
    #[error("cannot read or write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed: the operating system's error, or the serialiser's.
        #[source]
        source: BoxedSource,
    },

    /// A checkpoint does not fit the model its config describes, or cannot be read. Every
    /// offending key is listed (boxed, so that `Result<T, Error>` stays small).
    #[error("{0}")]
    Checkpoint(Box<CheckpointProblems>),

    /// A model was asked to compute in a number format its device has no arithmetic for.
    #[error(
        "{model}: {device} cannot compute in {precision}; keep `Precision::F32` (the default) \
         on this device, or use a GPU whose adapter has {precision} shaders (on the CPU, \
         `NdArray::with_weights` keeps the weights in {precision} and computes in f32)"
    )]
    PrecisionUnsupported {
        /// Which model.
        model: &'static str,
        /// The format asked for (`f16`, `bf16`).
        precision: String,
        /// The backend's name.
        device: String,
    },

    /// An input to the model or forecaster is wrong: `kind` says how (to match on), `reason`
    /// says it in words with what would fix it.
    #[error("{what}: {reason}")]
    Input {
        /// Which call or input.
        what: &'static str,
        /// What kind of problem it is.
        kind: InputKind,
        /// What is wrong and what would fix it.
        reason: String,
    },

    /// One device of a multi-device forecast failed ([`MultiDevice`](crate::multi::MultiDevice)):
    /// which device, the items it had, and its error. The input is unchanged (it was
    /// borrowed): forecast it again without the device, or on fewer items at once.
    #[error(
        "device {index} ({name}){}: {source}",
        .items.as_ref().map_or(String::new(), |r| format!(", items {}..{} of the batch", r.start, r.end))
    )]
    Device {
        /// The device's place in the list the forecaster was built from.
        index: usize,
        /// The device's backend name.
        name: String,
        /// The items of the batch it forecast (`None` when loading the model failed).
        items: Option<std::ops::Range<usize>>,
        /// What went wrong there.
        #[source]
        source: Box<Error>,
    },

    /// A model could not be fetched from the Hugging Face Hub (feature `hub`): which
    /// repository and file, and why (boxed, so that `Result<T, Error>` stays small).
    #[cfg(feature = "hub")]
    #[error(transparent)]
    Hub(Box<HubError>),
}

/// Why a file of a Hugging Face Hub repository could not be had ([`Error::Hub`]).
#[cfg(feature = "hub")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HubProblem {
    /// The repository id or revision is not one the Hub accepts; nothing was requested.
    InvalidName,
    /// The Hub has no such repository, revision or file (HTTP 404; 401 for a repository that
    /// does not exist or is private and no token was given).
    NotFound,
    /// The repository is gated or private and the token does not give access (HTTP 403).
    AccessDenied,
    /// Offline mode, and the file is not in the cache.
    NotCached,
    /// The endpoint could not be reached, or the transfer broke off.
    Network,
    /// The endpoint answered, but not as the Hub does (status, headers, changing commits).
    Server,
    /// The cache directory could not be read or written.
    Cache,
}

/// A file of a Hugging Face Hub repository that could not be had ([`Error::Hub`]).
#[cfg(feature = "hub")]
#[derive(Debug, thiserror::Error)]
#[error("Hugging Face Hub: `{file}` of `{repo}` (revision `{revision}`): {reason}")]
#[non_exhaustive]
pub struct HubError {
    /// The repository id, e.g. `Datadog/Toto-Open-Base-1.0`.
    pub repo: String,
    /// The revision asked for (a branch, tag or commit).
    pub revision: String,
    /// The file of the repository, e.g. `config.json`.
    pub file: String,
    /// The kind of failure.
    pub problem: HubProblem,
    /// What went wrong and what to do about it.
    pub reason: String,
    /// The HTTP client's or the operating system's error, when there is one.
    #[source]
    pub source: Option<BoxedSource>,
}

/// What kind of bad input an [`Error::Input`] is, for callers that handle some kinds
/// (a retry with a shorter horizon, a fallback to sample mode) and report the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputKind {
    /// Shapes that do not fit together (the reason names both).
    Shape,
    /// An input with nothing in it: no series, an empty dimension, no level asked for.
    Empty,
    /// An option or argument outside its range (a horizon of 0, a sample count its batch does
    /// not divide, a level outside `[0, 1]`, a block size that is not whole patches).
    OutOfRange,
    /// A question the forecast cannot answer: quantiles, spread or draws of a mean-mode
    /// forecast, more draws than it holds paths.
    NoDistribution,
    /// An input this model does not take (known covariates for Toto 1.0).
    Unusable,
    /// A failure of the call's own machinery (a device's thread that stopped or panicked).
    Failed,
    /// A call on a streaming session that was closed.
    Closed,
    /// Steps pushed out of order: a time before the session's next step.
    OutOfOrder,
}

/// What is wrong with a checkpoint ([`Error::Checkpoint`]): every missing, unexpected, mis-shaped
/// or unreadable tensor, by its name in the file.
///
/// Its message lists only the groups that have problems, e.g. `checkpoint model.safetensors:
/// unreadable ["the file is truncated: ..."]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
#[non_exhaustive]
pub struct CheckpointProblems {
    /// The file (or `<bytes>`).
    pub path: String,
    /// Keys the model needs that the file lacks.
    pub missing: Vec<String>,
    /// Keys in the file that the model does not have (`rotary_emb.*` buffers are ignored).
    pub unexpected: Vec<String>,
    /// `key: expected …, found …` for tensors of the wrong shape or dtype.
    pub mismatched: Vec<String>,
    /// Tensors or files that could not be read or parsed.
    pub unreadable: Vec<String>,
}

impl CheckpointProblems {
    /// No problem found yet, for `path`.
    pub(crate) fn new(path: String) -> Self {
        CheckpointProblems {
            path,
            missing: Vec::new(),
            unexpected: Vec::new(),
            mismatched: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    /// Whether nothing is wrong.
    pub(crate) fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.unreadable.is_empty()
    }

    /// The message: the non-empty groups of problems, in a fixed order.
    fn message(&self) -> String {
        let groups = [
            ("missing", &self.missing),
            ("unexpected", &self.unexpected),
            ("wrong shape or dtype", &self.mismatched),
            ("unreadable", &self.unreadable),
        ];
        let listed: Vec<String> = groups
            .iter()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(name, keys)| format!("{name} {keys:?}"))
            .collect();
        let mut text = format!("checkpoint {}: {}", self.path, listed.join("; "));
        if !self.missing.is_empty() || !self.unexpected.is_empty() || !self.mismatched.is_empty() {
            text.push_str(
                " (it does not match the config; keys as in the file; `model.` prefixes and \
                 both MLP namings are accepted)",
            );
        }
        text
    }

    /// The file could not be read at all: `reason` as the only problem.
    pub(crate) fn unreadable(path: String, reason: String) -> Error {
        let mut problems = CheckpointProblems::new(path);
        problems.unreadable.push(reason);
        Error::Checkpoint(Box::new(problems))
    }
}

impl Error {
    /// [`Error::Input`] of `what`, of `kind`.
    pub(crate) fn input(what: &'static str, kind: InputKind, reason: impl Into<String>) -> Self {
        Error::Input {
            what,
            kind,
            reason: reason.into(),
        }
    }

    /// [`Error::Config`] without an underlying error.
    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            reason: reason.into(),
            source: None,
        }
    }

    /// [`Error::Config`] for a `config.json` that does not parse, keeping serde's error.
    pub(crate) fn config_json(e: serde_json::Error) -> Self {
        Error::Config {
            field: "config.json".to_owned(),
            reason: e.to_string(),
            source: Some(Box::new(e)),
        }
    }

    /// `Ok` if every `(param, device)` is `expected`, else [`Error::DeviceMismatch`] for the
    /// first that is not.
    pub(crate) fn ensure_devices(
        what: &'static str,
        expected: &burn::tensor::Device,
        found: impl IntoIterator<Item = (&'static str, burn::tensor::Device)>,
    ) -> Result<(), Self> {
        for (param, found) in found {
            if &found != expected {
                return Err(Error::DeviceMismatch {
                    what,
                    param,
                    expected: format!("{expected:?}"),
                    found: format!("{found:?}"),
                });
            }
        }
        Ok(())
    }

    /// [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl std::fmt::Display, source: impl Into<BoxedSource>) -> Self {
        Error::Io {
            path: path.to_string(),
            source: source.into(),
        }
    }

    /// [`Error::ReadBack`] of `what` from `device`.
    pub(crate) fn read_back(
        what: impl Into<String>,
        device: &burn::tensor::Device,
        source: burn::tensor::TensorReadError,
    ) -> Self {
        Error::ReadBack {
            what: what.into(),
            device: format!("{device:?}"),
            source: Box::new(source),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::Error;

    #[test]
    fn errors_keep_their_source() {
        let io = Error::io(
            "x.json",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        let source = io.source().expect("an I/O error keeps its source");
        let kind = source.downcast_ref::<std::io::Error>().map(|e| e.kind());
        assert_eq!(kind, Some(std::io::ErrorKind::NotFound));
        assert!(io.to_string().contains("x.json"), "{io}");
        let parse = serde_json::from_str::<u32>("{").unwrap_err();
        let config = Error::config_json(parse);
        let source = config.source().expect("a parse error keeps its source");
        assert!(source.downcast_ref::<serde_json::Error>().is_some());
        assert!(
            Error::config("embed_dim", "must be even")
                .source()
                .is_none()
        );
    }
    #[test]
    fn results_stay_small() {
        // clippy's `result_large_err` threshold is 128 bytes; boxed lists keep us well below.
        assert!(
            std::mem::size_of::<Error>() <= 96,
            "{}",
            std::mem::size_of::<Error>()
        );
    }
}
