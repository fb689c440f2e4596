//! `MixtureSameFamily(mixing, component)`: Toto's output head.

use super::shape::ReshapeExact;
use burn::tensor::{Device, Tensor};

use super::categorical::Categorical;
use super::shape::{BroadcastTo, full_shape, value_shape};
use super::{Cdf, Distribution};
use crate::backend::Backend;
use crate::backend::ops::mixture::composed::gather_rows;
use crate::error::{Error, Result};
use crate::special::{bisect, quantile_ends};

const NAME: &str = "MixtureSameFamily";

/// A distribution family whose parameters can be reshaped or gathered as a whole, so a
/// [`MixtureSameFamily`] can evaluate all `K` components at once and draw from one selected
/// component per output.
pub trait MixtureComponent<const D: usize>: Distribution<D> {
    /// The same family with parameters of rank `E`.
    type Mapped<const E: usize>: Distribution<E>;

    /// The same family with `f` applied to every parameter (each of the batch shape); `f` must
    /// give every parameter the same shape, which becomes the new batch shape.
    fn map_params<const E: usize>(&self, f: impl Fn(Tensor<D>) -> Tensor<E>) -> Self::Mapped<E>;

    /// The family's name, for errors.
    fn family(&self) -> &'static str;

    /// `samples` draws from the mixture of these components (batch shape `[batch.., K]`,
    /// flattened to `rows × K`) with mixing `logits` (`[rows, K]`) as one backend op, when the
    /// family has one: `Some([samples, rows])`. `None` (the default) makes
    /// [`MixtureSameFamily::sample`] draw the component index, gather its parameters and sample
    /// the family.
    fn sample_mixture(&self, logits: Tensor<2>, samples: usize) -> Option<Result<Tensor<2>>> {
        let _ = (logits, samples);
        None
    }
}

/// A mixture of `K` components of one family: `p(x) = Σ_k w_k p_k(x)`, with the weights from a
/// [`Categorical`] over the component's last batch dimension (torch's `MixtureSameFamily`).
///
/// - `mixing` has parameter shape `[batch.., K]` and `component` batch shape `[batch.., K]`
///   (rank `DK = D + 1`); the mixture's batch shape is `[batch..]`, rank `D`.
/// - Sampling draws the component index first (one uniform per output), gathers that component's
///   parameters, and draws **one** component variate per output; torch draws all `K` and throws
///   `K - 1` away.
/// - `log_prob` is `logsumexp_k(ln w_k + ln p_k(x))`; `cdf` is `Σ_k w_k F_k(x)`; mean
///   `Σ w_k μ_k`; variance `Σ w_k (σ²_k + μ²_k) − μ²` (the law of total variance).
///
/// ```
/// use burn::tensor::Tensor;
/// use toto_fallback::{Backend, NdArray};
/// use toto_fallback::distr::{Categorical, Distribution, MixtureSameFamily, Normal};
///
/// let cpu = NdArray::seeded(0);
/// let dev = cpu.device();
/// // One mixture (batch shape [1]) of N(-2, 1) and N(2, 1) with weights 0.25 / 0.75.
/// let mixing = Categorical::from_probs(&cpu, Tensor::<2>::from_floats([[0.25, 0.75]], dev))?;
/// let component = Normal::new(
///     &cpu,
///     Tensor::<2>::from_floats([[-2.0, 2.0]], dev),
///     Tensor::<2>::ones([1, 2], dev),
/// )?;
/// let mix: MixtureSameFamily<_, _, 1, 2> = MixtureSameFamily::new(mixing, component)?;
/// let mean = mix.mean().into_data().try_to_vec::<f32>().unwrap();
/// assert!((mean[0] - 1.0).abs() < 1e-6);
/// let x: Tensor<2> = mix.sample(&[20_000])?; // [20000, 1]
/// let m: f32 = x.mean().into_scalar();
/// assert!((m - 1.0).abs() < 0.05);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MixtureSameFamily<B: Backend, C, const D: usize, const DK: usize> {
    mixing: Categorical<B, DK>,
    component: C,
    batch: [usize; D],
    k: usize,
}

impl<B, C, const D: usize, const DK: usize> MixtureSameFamily<B, C, D, DK>
where
    B: Backend,
    C: MixtureComponent<DK>,
{
    /// The mixture of `component`'s last batch dimension with weights `mixing`.
    ///
    /// # Errors
    /// [`Error::Rank`] unless `DK = D + 1`; [`Error::ParamShape`] if the mixing and component
    /// shapes differ; [`Error::DeviceMismatch`] if they are on different devices.
    pub fn new(mixing: Categorical<B, DK>, component: C) -> Result<Self> {
        if DK != D + 1 {
            return Err(Error::Rank {
                dist: NAME,
                what: "the component batch shape minus its K dimension",
                needed: DK.saturating_sub(1),
                asked: D,
            });
        }
        let dims = component.batch_shape();
        let mixing_dims: Vec<usize> = mixing
            .batch_shape()
            .iter()
            .copied()
            .chain([mixing.num_categories()])
            .collect();
        if mixing_dims != dims {
            return Err(Error::ParamShape {
                dist: NAME,
                param: "mixing",
                shape: mixing_dims,
                batch: dims.to_vec(),
            });
        }
        Error::ensure_devices(
            NAME,
            mixing.device(),
            [("component", component.device().clone())],
        )?;
        let mut batch = [0; D];
        batch.copy_from_slice(&dims[..D]);
        Ok(MixtureSameFamily {
            k: dims[DK - 1],
            mixing,
            component,
            batch,
        })
    }

    /// The mixing distribution.
    pub fn mixing(&self) -> &Categorical<B, DK> {
        &self.mixing
    }

    /// The components.
    pub fn component(&self) -> &C {
        &self.component
    }

    fn batch_numel(&self) -> usize {
        self.batch.iter().product()
    }

    /// Components as `[1, B, K]` for evaluation against values `[N, B, 1]`.
    fn components3(&self) -> C::Mapped<3> {
        let (b, k) = (self.batch_numel(), self.k);
        self.component.map_params(|p| p.reshape_exact([1, b, k]))
    }

    /// A value broadcast to the full shape and flattened to `[N, B, 1]`.
    fn flat_value<const S: usize>(&self, value: Tensor<S>) -> Result<([usize; S], Tensor<3>)> {
        let shape = value_shape(NAME, value.dims(), &self.batch)?;
        let b = self.batch_numel();
        let n = shape.iter().product::<usize>() / b.max(1);
        Ok((shape, value.broadcast_to(shape).reshape_exact([n, b, 1])))
    }

    /// Mixing log-weights as `[1, B, K]`.
    fn log_weights3(&self) -> Tensor<3> {
        self.mixing
            .logits()
            .reshape_exact([1, self.batch_numel(), self.k])
    }

    /// Mixing weights times a per-component quantity `[B.., K]`, summed over `K`: `[B..]`.
    fn weighted_sum(&self, per_component: Tensor<DK>) -> Tensor<D> {
        self.mixing
            .probs()
            .mul(per_component)
            .sum_dim(DK - 1)
            .reshape_exact(self.batch)
    }
}

impl<B, C, const D: usize, const DK: usize> Distribution<D> for MixtureSameFamily<B, C, D, DK>
where
    B: Backend,
    C: MixtureComponent<DK>,
{
    fn batch_shape(&self) -> [usize; D] {
        self.batch
    }

    fn device(&self) -> &Device {
        self.mixing.device()
    }

    fn sample<const S: usize>(&self, sample_shape: &[usize]) -> Result<Tensor<S>> {
        let shape = full_shape::<S>(NAME, sample_shape, &self.batch)?;
        let n: usize = sample_shape.iter().product();
        let (b, k) = (self.batch_numel(), self.k);
        // The draw normalises the logits itself: no log-softmax pass over [B, K] first.
        let logits = self.mixing.unnormalised_logits().reshape_exact([b, k]);
        if let Some(x) = self.component.sample_mixture(logits, n) {
            return Ok(x?.reshape_exact(shape));
        }
        let index = self.mixing.sample_flat(n)?.reshape_exact([n, b]); // [n, B]
        let chosen = self.component.map_params(|p| {
            gather_rows(p.reshape_exact([b, k]), index.clone()).reshape_exact([n, b, 1])
        });
        let x: Tensor<3> = chosen.sample(&[])?; // [n, B, 1]
        Ok(x.reshape_exact(shape))
    }

    fn log_prob<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        let (shape, x) = self.flat_value(value)?;
        let lp = self.components3().log_prob(x)?.add(self.log_weights3()); // [N, B, K]
        // logsumexp over K, shifted by the max so no term overflows.
        let max = lp.clone().max_dim(2); // [N, B, 1]
        let lse = lp.sub(max.clone()).exp().sum_dim(2).log().add(max);
        Ok(lse.reshape_exact(shape))
    }

    fn mean(&self) -> Tensor<D> {
        self.weighted_sum(self.component.mean())
    }

    fn variance(&self) -> Tensor<D> {
        let mean = self.component.mean();
        let second = self.component.variance().add(mean.clone().square());
        self.weighted_sum(second)
            .sub(self.weighted_sum(mean).square())
    }
}

/// Bisection steps of [`MixtureSameFamily::quantile`]: from a bracket as wide as 10⁶ this
/// reaches f32 resolution (2⁻⁴⁸·10⁶ ≈ 4e-9); the loop stays on the device and costs a fixed 48
/// mixture CDF evaluations.
const QUANTILE_STEPS: usize = 48;

impl<B, C, const D: usize, const DK: usize> Cdf<D> for MixtureSameFamily<B, C, D, DK>
where
    B: Backend,
    C: MixtureComponent<DK>,
    C::Mapped<3>: Cdf<3>,
{
    /// `P(X <= value) = Σ_k w_k F_k(value)`.
    fn cdf<const S: usize>(&self, value: Tensor<S>) -> Result<Tensor<S>> {
        let (shape, x) = self.flat_value(value)?;
        Ok(self.cdf3(x)?.reshape_exact(shape))
    }

    /// The `x` with `Σ_k w_k F_k(x) = p`, by bisection inside the bracket
    /// `[min_k F_k⁻¹(p), max_k F_k⁻¹(p)]` (the mixture CDF is an average of the component CDFs,
    /// so its quantile lies between theirs), with a fixed budget of 48 halvings and no host
    /// round trip. `-inf` at `p = 0`, `+inf` at `p = 1`, NaN outside `[0, 1]`. Tested:
    /// `|F(q) − p| <= 1e-5`.
    fn quantile<const S: usize>(&self, p: Tensor<S>) -> Result<Tensor<S>> {
        let (shape, p) = self.flat_value(p)?; // [N, B, 1]
        let q = self.components3().quantile(p.clone())?; // [N, B, K]
        let lo = q.clone().min_dim(2);
        let hi = q.max_dim(2);
        let x = bisect(lo, hi, QUANTILE_STEPS, |mid| {
            Ok(self.cdf3(mid)?.lower(p.clone()))
        })?;
        // The bracket is infinite at p = 0 and 1; the ends are set explicitly.
        let x = quantile_ends(x, p, f32::NEG_INFINITY);
        Ok(x.reshape_exact(shape))
    }
}

impl<B, C, const D: usize, const DK: usize> MixtureSameFamily<B, C, D, DK>
where
    B: Backend,
    C: MixtureComponent<DK>,
    C::Mapped<3>: Cdf<3>,
{
    /// The mixture CDF of values `[N, B, 1]`.
    fn cdf3(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let f = self.components3().cdf(x)?; // [N, B, K]
        let w = self
            .mixing
            .probs()
            .reshape_exact([1, self.batch_numel(), self.k]);
        Ok(f.mul(w).sum_dim(2))
    }
}
