//! `config.json`: the keyword arguments of toto-ts's `Toto(...)`, exactly the published keys.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::forecast::Generation;
use crate::shape::{MAX_ELEMENTS, MAX_PARAMETERS};

/// The scaler class string of toto-ts (a dictionary key in Python, so it must match exactly).
pub const SCALER_CLS: &str = "<class 'model.scaler.CausalPatchStdMeanScaler'>";
/// The output distribution class string of toto-ts.
pub const OUTPUT_CLS: &str = "<class 'model.distribution.MixtureOfStudentTsOutput'>";

/// The largest `scale_factor_exponent` accepted: `10^300` is still a finite f64.
pub const MAX_SCALE_EXPONENT: f64 = 300.0;

/// Keyword arguments of the output distribution: the number of Student-T components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputKwargs {
    /// `K`, the number of mixture components (24 for Toto-Open-Base-1.0).
    pub k_components: usize,
}

/// Toto's configuration, as in the published `config.json`.
///
/// Unknown keys are rejected (toto-ts's constructor would reject them too); missing keys are
/// an error except those with a documented default in toto-ts (`spacewise_first`,
/// `use_memory_efficient_attention`, `stabilize_with_global`, `scale_factor_exponent`,
/// `output_distribution_kwargs`). [`TotoConfig::validate`] checks the values.
///
/// ```
/// use toto_fallback::toto::TotoConfig;
///
/// let base = TotoConfig::open_base_1_0();
/// assert_eq!((base.embed_dim, base.num_layers, base.num_heads), (768, 12, 12));
/// assert_eq!(base.parameter_count(), 151_306_080); // the published "151M"
/// let json = serde_json::to_string(&base).unwrap();
/// assert_eq!(TotoConfig::from_json(&json)?, base);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotoConfig {
    /// Time steps per patch `P` (64).
    pub patch_size: usize,
    /// Patch stride; toto-ts assumes it equals `patch_size`.
    pub stride: usize,
    /// Model width `D` (768).
    pub embed_dim: usize,
    /// Number of transformer layers `L` (12).
    pub num_layers: usize,
    /// Attention heads `H` (12); `embed_dim / num_heads` must be even.
    pub num_heads: usize,
    /// SwiGLU hidden width `F` (3072).
    pub mlp_hidden_dim: usize,
    /// Training-time dropout; unused at inference.
    pub dropout: f64,
    /// One space-wise layer every this many layers (`-1`: none).
    pub spacewise_every_n_layers: i64,
    /// Whether each block starts (rather than ends) with its space-wise layer.
    #[serde(default = "default_true")]
    pub spacewise_first: bool,
    /// Must be [`SCALER_CLS`].
    pub scaler_cls: String,
    /// Must be `[OUTPUT_CLS]`.
    pub output_distribution_classes: Vec<String>,
    /// `{"k_components": K}`.
    #[serde(default = "default_kwargs")]
    pub output_distribution_kwargs: OutputKwargs,
    /// An xFormers switch in toto-ts; no effect on the math.
    #[serde(default = "default_true")]
    pub use_memory_efficient_attention: bool,
    /// Clamp the causal scale relative to the global scale.
    #[serde(default = "default_true")]
    pub stabilize_with_global: bool,
    /// The clamp range is `global scale · 10^±exponent`.
    #[serde(default = "default_exponent")]
    pub scale_factor_exponent: f64,
}

fn default_true() -> bool {
    true
}

fn default_kwargs() -> OutputKwargs {
    OutputKwargs { k_components: 24 }
}

fn default_exponent() -> f64 {
    10.0
}

/// The kind of one transformer layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// Causal attention along time, per variate, with rotary + xPos positions.
    Time,
    /// Bidirectional attention across variates with equal ids, per patch.
    Space,
}

impl TotoConfig {
    /// Toto-Open-Base-1.0's configuration (151,306,080 parameters).
    pub fn open_base_1_0() -> Self {
        TotoConfig {
            patch_size: 64,
            stride: 64,
            embed_dim: 768,
            num_layers: 12,
            num_heads: 12,
            mlp_hidden_dim: 3072,
            dropout: 0.1,
            spacewise_every_n_layers: 12,
            spacewise_first: false,
            scaler_cls: SCALER_CLS.to_owned(),
            output_distribution_classes: vec![OUTPUT_CLS.to_owned()],
            output_distribution_kwargs: OutputKwargs { k_components: 24 },
            use_memory_efficient_attention: true,
            stabilize_with_global: true,
            scale_factor_exponent: 10.0,
        }
    }

    /// Parses and validates `config.json` text.
    ///
    /// # Errors
    /// [`Error::WrongGeneration`] for a Toto 2.0 config; [`Error::Config`] naming the unknown,
    /// missing or mistyped key, or the invalid value.
    pub fn from_json(text: &str) -> Result<Self> {
        Generation::expect_in_config(text, Generation::V1, "TotoConfig (Toto::from_dir)")?;
        let config: TotoConfig = serde_json::from_str(text).map_err(Error::config_json)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a `config.json` file.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; as [`TotoConfig::from_json`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        Self::from_json(&text)
    }

    /// Checks the values: positive sizes, `stride == patch_size`, heads dividing the width
    /// into an even head dimension, a layer pattern that divides the layer count, the class
    /// strings toto-ts accepts.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field and what would fix it.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Err(Error::config(field, reason));
        for (field, value) in [
            ("patch_size", self.patch_size),
            ("embed_dim", self.embed_dim),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("mlp_hidden_dim", self.mlp_hidden_dim),
            (
                "output_distribution_kwargs.k_components",
                self.output_distribution_kwargs.k_components,
            ),
        ] {
            if value == 0 {
                return bad(field, "must be at least 1".to_owned());
            }
        }
        if self.stride != self.patch_size {
            return bad(
                "stride",
                format!(
                    "must equal patch_size ({}), as toto-ts assumes; got {}",
                    self.patch_size, self.stride
                ),
            );
        }
        // Sizes first: an absurd size is the problem, whatever else it breaks.
        let fits = self.checked_sizes().is_some_and(|(total, largest)| {
            total as u128 <= u128::from(MAX_PARAMETERS)
                && largest as u128 <= u128::from(MAX_ELEMENTS)
        });
        if !fits {
            return bad(
                "embed_dim",
                format!(
                    "the sizes (embed_dim {}, num_layers {}, mlp_hidden_dim {}, patch_size {}, \
                     k_components {}) describe a model of more than {MAX_PARAMETERS} \
                     parameters or a weight of more than {MAX_ELEMENTS} elements; \
                     Toto-Open-Base-1.0 has 151,306,080",
                    self.embed_dim,
                    self.num_layers,
                    self.mlp_hidden_dim,
                    self.patch_size,
                    self.k_components()
                ),
            );
        }
        if !self.embed_dim.is_multiple_of(self.num_heads)
            || !(self.embed_dim / self.num_heads).is_multiple_of(2)
        {
            return bad(
                "num_heads",
                format!(
                    "must divide embed_dim ({}) into an even head dimension (rotary pairs); got {}",
                    self.embed_dim, self.num_heads
                ),
            );
        }
        let n = self.spacewise_every_n_layers;
        if n != -1 && (n < 1 || self.num_layers as i64 % n != 0) {
            return bad(
                "spacewise_every_n_layers",
                format!(
                    "must be -1 or a divisor of num_layers ({}); got {n}",
                    self.num_layers
                ),
            );
        }
        if self.scaler_cls != SCALER_CLS {
            return bad(
                "scaler_cls",
                format!(
                    "only {SCALER_CLS:?} is supported; got {:?}",
                    self.scaler_cls
                ),
            );
        }
        if self.output_distribution_classes != [OUTPUT_CLS] {
            return bad(
                "output_distribution_classes",
                format!(
                    "only [{OUTPUT_CLS:?}] is supported; got {:?}",
                    self.output_distribution_classes
                ),
            );
        }
        if !(0.0..=MAX_SCALE_EXPONENT).contains(&self.scale_factor_exponent) {
            return bad(
                "scale_factor_exponent",
                format!(
                    "must be in [0, {MAX_SCALE_EXPONENT}] (10^exponent must be a finite f64); \
                     got {}",
                    self.scale_factor_exponent
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return bad(
                "dropout",
                format!("must be a probability in [0, 1]; got {}", self.dropout),
            );
        }
        Ok(())
    }

    /// The per-head width `embed_dim / num_heads`.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// `K`, the number of Student-T components of the head.
    pub fn k_components(&self) -> usize {
        self.output_distribution_kwargs.k_components
    }

    /// The kind of every layer, in order: blocks of `n − 1` time-wise layers with one
    /// space-wise layer appended (or prepended when `spacewise_first`), repeated `L / n` times.
    pub fn layer_kinds(&self) -> Vec<LayerKind> {
        let n = self.spacewise_every_n_layers;
        if n < 1 {
            return vec![LayerKind::Time; self.num_layers];
        }
        let mut block = vec![LayerKind::Time; n as usize - 1];
        if self.spacewise_first {
            block.insert(0, LayerKind::Space);
        } else {
            block.push(LayerKind::Space);
        }
        block
            .iter()
            .copied()
            .cycle()
            .take(self.num_layers)
            .collect()
    }

    /// The number of parameters of the model this configuration describes (saturated at
    /// `usize::MAX` for absurd sizes, which [`TotoConfig::validate`] rejects).
    pub fn parameter_count(&self) -> usize {
        self.checked_sizes().map_or(usize::MAX, |(total, _)| total)
    }

    /// `(parameter count, largest tensor's element count)`, or `None` on overflow.
    fn checked_sizes(&self) -> Option<(usize, usize)> {
        let (d, p, f, k) = (
            self.embed_dim,
            self.patch_size,
            self.mlp_hidden_dim,
            self.k_components(),
        );
        let linear = |i: usize, o: usize| i.checked_mul(o)?.checked_add(o);
        let layer = [
            2usize.checked_mul(d)?,
            linear(d, 3usize.checked_mul(d)?)?,
            linear(d, d)?,
            linear(d, 2usize.checked_mul(f)?)?,
            linear(f, d)?,
        ]
        .into_iter()
        .try_fold(0usize, usize::checked_add)?;
        let head = linear(d, d.checked_mul(p)?)?;
        let total = [
            linear(p, d)?,
            self.num_layers.checked_mul(layer)?,
            head,
            4usize.checked_mul(linear(d, k)?)?,
        ]
        .into_iter()
        .try_fold(0usize, usize::checked_add)?;
        // The largest single weight: wqkv [3D, D], w12 [2F, D], w3 [D, F], the unembedding
        // [D·P, D], the patch embedding [D, P], the head's [K, D].
        let largest = [3 * d * d, 2 * f * d, d * p * d, d * p, k * d]
            .into_iter()
            .max()?;
        Some((total, largest))
    }
}
