//! `config.json`: the fields of toto-2's `Toto2ModelConfig` dataclass.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::forecast::Generation;
use crate::shape::{MAX_ELEMENTS, MAX_PARAMETERS, saturating_product};

/// The keys of `config.json`, as toto-2 writes them (`dataclasses.asdict` of
/// `Toto2ModelConfig` after `__post_init__`); unknown keys are dropped, as the reference's
/// loader drops them.
#[derive(Debug, Clone, Deserialize)]
struct File {
    /// Every other key: dropped (and logged), as toto-2 drops them; `pre_norm` and
    /// `heads_per_group` among them (always pre-norm; the ratio is recomputed).
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde_json::Value>,
    patch_size: usize,
    d_model: usize,
    num_heads: usize,
    num_layers: usize,
    layer_group_size: usize,
    num_variate_layers_per_group: usize,
    variate_layer_first: bool,
    #[serde(default)]
    dropout_p: f64,
    #[serde(default = "default_norm_eps")]
    norm_eps: f64,
    #[serde(default)]
    attn_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    #[serde(default = "one")]
    num_output_patches: usize,
    #[serde(default)]
    d_ff: Option<usize>,
    #[serde(default)]
    qk_dim: Option<usize>,
    #[serde(default)]
    v_dim: Option<usize>,
    #[serde(default)]
    num_groups: Option<usize>,
    #[serde(default = "one_f64")]
    residual_mult: f64,
    #[serde(default)]
    residual_attn_ratio: Option<f64>,
    #[serde(default = "yes")]
    qk_norm: bool,
    #[serde(default)]
    norm_include_weight: bool,
    #[serde(default)]
    qk_norm_include_weight: Option<bool>,
    #[serde(default)]
    per_dim_scale: bool,
    #[serde(default)]
    use_xpos: bool,
}

fn default_norm_eps() -> f64 {
    5e-5
}
fn one() -> usize {
    1
}
fn one_f64() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}

/// Toto 2.0's configuration, resolved: toto-2's `Toto2ModelConfig` after its `__post_init__`
/// (every derived width filled in).
///
/// [`Toto2Config::from_json`] reads a published `config.json`: unknown keys are dropped as the
/// reference drops them (and logged at `info` level); `pre_norm` and `heads_per_group` are
/// ignored as there (the layers are always pre-norm, the group ratio is recomputed); a non-zero
/// `dropout_p` or a missing `residual_attn_ratio` is refused with the reference's reason.
///
/// ```
/// use toto_fallback::toto2::Toto2Config;
///
/// let json = r#"{"patch_size": 32, "d_model": 384, "num_heads": 6, "num_layers": 12,
///     "layer_group_size": 4, "num_variate_layers_per_group": 1, "variate_layer_first": false,
///     "residual_attn_ratio": 2.828, "use_xpos": true, "future_key": 1}"#;
/// let config = Toto2Config::from_json(json)?;
/// assert_eq!((config.d_ff, config.qk_dim, config.num_groups), (1024, 64, 6));
/// assert_eq!(config.variate_layers(), [3, 7, 11]);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Toto2Config {
    /// Time steps per patch `p` (32 in the published checkpoints).
    pub patch_size: usize,
    /// Model width `D`.
    pub d_model: usize,
    /// Query heads `H`.
    pub num_heads: usize,
    /// Layers `L`, a multiple of `layer_group_size`.
    pub num_layers: usize,
    /// Layers per group.
    pub layer_group_size: usize,
    /// Variate (across-series) layers per group; the others attend along time.
    pub num_variate_layers_per_group: usize,
    /// Whether a group starts (rather than ends) with its variate layers.
    pub variate_layer_first: bool,
    /// Dropout at training; must be 0 (the reference refuses anything else).
    pub dropout_p: f64,
    /// The epsilon of every RMSNorm, inside the root.
    pub norm_eps: f64,
    /// Biases on the attention projections.
    pub attn_bias: bool,
    /// Biases on the feed-forward layers.
    pub mlp_bias: bool,
    /// Output patches per position; forecasting needs 1.
    pub num_output_patches: usize,
    /// Unused by the reference (its layers are always pre-norm); kept for the file.
    pub pre_norm: bool,
    /// Feed-forward width `F` (default `(⌊8D/3⌋ + 7) / 8 · 8`).
    pub d_ff: usize,
    /// Query/key width per head (default `D / H`).
    pub qk_dim: usize,
    /// Value width per head (default `qk_dim`).
    pub v_dim: usize,
    /// Key/value heads `G` for grouped-query attention (default `H`).
    pub num_groups: usize,
    /// `H / G`, recomputed.
    pub heads_per_group: usize,
    /// The residual scaling rule's multiplier.
    pub residual_mult: f64,
    /// The residual scaling rule's attention ratio (toto-2's
    /// `compute_residual_attn_ratio(context, patch)`).
    pub residual_attn_ratio: f64,
    /// RMSNorm on queries and keys.
    pub qk_norm: bool,
    /// Weights on the block and output norms.
    pub norm_include_weight: bool,
    /// Weights on the query/key norms (default `norm_include_weight`).
    pub qk_norm_include_weight: bool,
    /// A learned per-dimension query scale.
    pub per_dim_scale: bool,
    /// xPos on the rotary embedding of the time layers.
    pub use_xpos: bool,
}

impl Toto2Config {
    /// Parses and validates the text of a `config.json`.
    ///
    /// # Errors
    /// [`Error::WrongGeneration`] for a Toto 1.0 config; [`Error::Config`] naming the missing or
    /// mistyped key, or the invalid value.
    pub fn from_json(text: &str) -> Result<Self> {
        Generation::expect_in_config(text, Generation::V2, "Toto2Config (Toto2::from_dir)")?;
        let file: File = serde_json::from_str(text).map_err(Error::config_json)?;
        for key in file.other.keys() {
            if !["pre_norm", "heads_per_group"].contains(&key.as_str()) {
                log::info!("Toto 2.0 config.json: ignoring the unknown key `{key}`");
            }
        }
        let config = Self::resolve(file)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a `config.json` file.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; as [`Toto2Config::from_json`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        Self::from_json(&text)
    }

    /// `__post_init__`: the defaults of the derived widths, the reference's refusals.
    fn resolve(f: File) -> Result<Self> {
        if f.dropout_p != 0.0 {
            return Err(Error::config(
                "dropout_p",
                format!(
                    "{} is refused, as toto-2 refuses it (\"Non-zero dropout_p is a bad choice \
                     here: it causes long-term training instability\"); set it to 0.0",
                    f.dropout_p
                ),
            ));
        }
        let Some(residual_attn_ratio) = f.residual_attn_ratio else {
            return Err(Error::config(
                "residual_attn_ratio",
                "must be set; toto-2 computes it as sqrt(s / ln s) with s = context length / \
                 patch size (Toto2Config::residual_attn_ratio_for)",
            ));
        };
        let num_groups = f.num_groups.filter(|&g| g > 0).unwrap_or(f.num_heads);
        let qk_dim = f
            .qk_dim
            .filter(|&d| d > 0)
            .unwrap_or(f.d_model.checked_div(f.num_heads).unwrap_or(0));
        let d_ff = f
            .d_ff
            .unwrap_or((f.d_model.saturating_mul(8) / 3).saturating_add(7) / 8 * 8);
        Ok(Toto2Config {
            patch_size: f.patch_size,
            d_model: f.d_model,
            num_heads: f.num_heads,
            num_layers: f.num_layers,
            layer_group_size: f.layer_group_size,
            num_variate_layers_per_group: f.num_variate_layers_per_group,
            variate_layer_first: f.variate_layer_first,
            dropout_p: 0.0,
            norm_eps: f.norm_eps,
            attn_bias: f.attn_bias,
            mlp_bias: f.mlp_bias,
            num_output_patches: f.num_output_patches,
            pre_norm: true,
            d_ff,
            qk_dim,
            v_dim: f.v_dim.filter(|&d| d > 0).unwrap_or(qk_dim),
            num_groups,
            heads_per_group: f.num_heads.checked_div(num_groups).unwrap_or(0),
            residual_mult: f.residual_mult,
            residual_attn_ratio,
            qk_norm: f.qk_norm,
            norm_include_weight: f.norm_include_weight,
            qk_norm_include_weight: f.qk_norm_include_weight.unwrap_or(f.norm_include_weight),
            per_dim_scale: f.per_dim_scale,
            use_xpos: f.use_xpos,
        })
    }

    /// toto-2's `compute_residual_attn_ratio(context_length, patch_size)`: `sqrt(s / ln s)`
    /// with `s = context_length / patch_size` (2048 / 32 gives 2.828…).
    pub fn residual_attn_ratio_for(context_length: usize, patch_size: usize) -> f64 {
        let s = context_length as f64 / patch_size as f64;
        (s / s.ln()).sqrt()
    }

    /// The indices of the variate (across-series) layers; the others attend along time.
    pub fn variate_layers(&self) -> Vec<usize> {
        (0..self.num_layers)
            .filter(|&i| self.is_variate(i))
            .collect()
    }

    /// Whether layer `i` attends across variates.
    pub fn is_variate(&self, i: usize) -> bool {
        let in_group = i % self.layer_group_size.max(1);
        let n = self.num_variate_layers_per_group;
        if self.variate_layer_first {
            in_group < n
        } else {
            in_group >= self.layer_group_size.saturating_sub(n)
        }
    }

    /// The width of the fused query/key/value projection: `qk·H + qk·G + v·G` (saturating).
    pub fn in_proj_width(&self) -> usize {
        let q = self.qk_dim.saturating_mul(self.num_heads);
        let k = self.qk_dim.saturating_mul(self.num_groups);
        let v = self.v_dim.saturating_mul(self.num_groups);
        q.saturating_add(k).saturating_add(v)
    }

    /// The number of parameters (saturating), as toto-2 counts them (the tau buffers excluded).
    pub fn parameter_count(&self) -> u64 {
        let (d, p, f) = (
            self.d_model as u128,
            self.patch_size as u128,
            self.d_ff as u128,
        );
        let (h, dv, dk) = (
            self.num_heads as u128,
            self.v_dim as u128,
            self.qk_dim as u128,
        );
        let proj = self.in_proj_width() as u128;
        let bias = |on: bool, n: u128| if on { n } else { 0 };
        let norm = bias(self.norm_include_weight, d);
        let qk_norm = bias(self.qk_norm && self.qk_norm_include_weight, 2 * dk);
        let layer = saturating_sum([
            saturating_product([proj, d]),
            bias(self.attn_bias, proj),
            saturating_product([d, dv, h]),
            bias(self.attn_bias, d),
            qk_norm,
            bias(self.per_dim_scale, dk),
            saturating_product([2, f, d]),
            bias(self.mlp_bias, 2 * f),
            saturating_product([d, f]),
            bias(self.mlp_bias, d),
            2 * norm,
        ]);
        let out = saturating_product([p, self.num_output_patches as u128, 9]);
        let embed = saturating_sum([
            saturating_product([4 * d, 2 * p]),
            4 * d,
            saturating_product([d, 4 * d]),
            d,
            saturating_product([d, 2 * p]),
            d,
        ]);
        let head = saturating_sum([
            saturating_product([4 * d, d]),
            4 * d,
            saturating_product([out, 4 * d]),
            out,
            saturating_product([out, d]),
            out,
        ]);
        let total = saturating_sum([
            embed,
            saturating_product([layer, self.num_layers as u128]),
            norm,
            head,
        ]);
        u64::try_from(total).unwrap_or(u64::MAX)
    }

    /// Checks the values: what toto-2's `__post_init__` and layers assert, and sizes a
    /// machine can hold.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field and what would fix it.
    pub fn validate(&self) -> Result<()> {
        self.check_shapes()?;
        self.check_values()?;
        self.check_capacity()
    }

    /// Sizes of at least 1 and the divisibilities toto-2 asserts.
    fn check_shapes(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Err(Error::config(field, reason));
        let sizes = [
            ("patch_size", self.patch_size),
            ("d_model", self.d_model),
            ("num_heads", self.num_heads),
            ("num_layers", self.num_layers),
            ("layer_group_size", self.layer_group_size),
            ("d_ff", self.d_ff),
            ("qk_dim", self.qk_dim),
            ("v_dim", self.v_dim),
            ("num_groups", self.num_groups),
        ];
        if let Some((field, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return bad(field, "must be at least 1".to_owned());
        }
        if !self.num_layers.is_multiple_of(self.layer_group_size) {
            return bad(
                "num_layers",
                format!(
                    "must be divisible by layer_group_size; got num_layers={} and \
                     layer_group_size={}",
                    self.num_layers, self.layer_group_size
                ),
            );
        }
        if self.num_variate_layers_per_group > self.layer_group_size {
            return bad(
                "num_variate_layers_per_group",
                format!(
                    "{} is more than the layers of a group ({})",
                    self.num_variate_layers_per_group, self.layer_group_size
                ),
            );
        }
        if !self.d_model.is_multiple_of(self.num_heads) {
            return bad(
                "num_heads",
                format!(
                    "d_model ({}) must be divisible by num_heads ({})",
                    self.d_model, self.num_heads
                ),
            );
        }
        if !self.num_heads.is_multiple_of(self.num_groups) {
            return bad(
                "num_groups",
                format!(
                    "num_heads ({}) must be divisible by num_groups ({}) and greater than or \
                     equal to it",
                    self.num_heads, self.num_groups
                ),
            );
        }
        if !self.qk_dim.is_multiple_of(4) {
            return bad(
                "qk_dim",
                format!(
                    "{} must be a multiple of 4: the rotary embedding turns pairs of the first \
                     half of each head",
                    self.qk_dim
                ),
            );
        }
        if self.num_output_patches != 1 {
            return bad(
                "num_output_patches",
                format!(
                    "{} is not supported: toto-2 forecasts with 1 output patch only",
                    self.num_output_patches
                ),
            );
        }
        Ok(())
    }

    /// Finite positive epsilon and residual rule.
    fn check_values(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Err(Error::config(field, reason));
        let positive = [
            ("norm_eps", self.norm_eps),
            ("residual_mult", self.residual_mult),
            ("residual_attn_ratio", self.residual_attn_ratio),
        ];
        if let Some((field, v)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return bad(field, format!("{v} must be finite and positive"));
        }
        Ok(())
    }

    /// Sizes a machine can hold.
    fn check_capacity(&self) -> Result<()> {
        let bad = |field: &str, reason: String| Err(Error::config(field, reason));
        let largest = [
            saturating_product([self.in_proj_width() as u128, self.d_model as u128]),
            saturating_product([2 * self.d_ff as u128, self.d_model as u128]),
            saturating_product([9 * self.patch_size as u128, 4 * self.d_model as u128]),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        if self.parameter_count() > MAX_PARAMETERS || largest > u128::from(MAX_ELEMENTS) {
            return bad(
                "d_model",
                format!(
                    "the model would have {} parameters (a weight of {largest} elements); at \
                     most {MAX_PARAMETERS} parameters and {MAX_ELEMENTS} elements per weight \
                     are accepted",
                    self.parameter_count()
                ),
            );
        }
        Ok(())
    }

    /// The configuration as `config.json` text (the dataclass fields, as toto-2 writes them).
    ///
    /// # Errors
    /// Never in practice ([`Error::Io`] if serde cannot write a value).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::io("config.json", e))
    }
}

fn saturating_sum<const N: usize>(terms: [u128; N]) -> u128 {
    terms.into_iter().fold(0u128, u128::saturating_add)
}
