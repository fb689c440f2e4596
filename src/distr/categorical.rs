//! `Categorical(logits)` over the last dimension.

use super::shape::ReshapeExact;
use std::sync::OnceLock;

use burn::tensor::{Device, Int, Tensor};

use super::shape::{BroadcastTo, batch_shape, full_shape, value_shape};
use crate::backend::Backend;
use crate::error::{Error, Result};

const NAME: &str = "Categorical";

/// The categorical distribution over `{0, .., K-1}` along the last dimension of its parameter,
/// given by `logits` (unnormalised log-probabilities) or `probs` (non-negative weights,
/// normalised here).
///
/// The parameter has shape `[batch.., K]` and rank `D`; the batch rank is `D - 1`. Samples are
/// `Int` tensors of shape `[sample.., batch..]`, drawn by the backend's `categorical` op (so
/// they appear in a fallback report like every other draw).
///
/// ```
/// use burn::tensor::{Int, Tensor};
/// use toto_fallback::{Backend, NdArray};
/// use toto_fallback::distr::Categorical;
///
/// let cpu = NdArray::seeded(0);
/// let cat = Categorical::from_probs(&cpu, Tensor::<2>::from_floats([[0.0, 1.0, 0.0]], cpu.device()))?;
/// let k: Tensor<2, Int> = cat.sample(&[5])?; // [5, 1]
/// assert_eq!(k.into_data().try_to_vec::<i64>().unwrap(), [1, 1, 1, 1, 1]);
/// # Ok::<(), toto_fallback::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Categorical<B: Backend, const D: usize> {
    backend: B,
    /// As given (or `ln probs`): what sampling reads, without normalising.
    logits: Tensor<D>,
    /// Normalised log-probabilities (`logsumexp` over the last dimension is 0), made on first use.
    log_probs: OnceLock<Tensor<D>>,
    /// `exp(log_probs)`, made on first use.
    probs: OnceLock<Tensor<D>>,
    dims: [usize; D],
}

impl<B: Backend, const D: usize> Categorical<B, D> {
    /// From logits `[batch.., K]`.
    ///
    /// # Errors
    /// [`Error::DeviceMismatch`](crate::Error::DeviceMismatch); [`Error::ParamShape`] if `D = 0` or
    /// `K = 0`.
    pub fn from_logits(backend: &B, logits: Tensor<D>) -> Result<Self> {
        let dims = Self::check(backend, "logits", &logits)?;
        Ok(Categorical {
            backend: backend.clone(),
            logits,
            log_probs: OnceLock::new(),
            probs: OnceLock::new(),
            dims,
        })
    }

    /// From non-negative weights `[batch.., K]` (they need not sum to 1).
    ///
    /// # Errors
    /// As [`Categorical::from_logits`].
    pub fn from_probs(backend: &B, probs: Tensor<D>) -> Result<Self> {
        let dims = Self::check(backend, "probs", &probs)?;
        let total = probs.clone().sum_dim(D - 1);
        let probs = probs.div(total);
        let logits = probs.clone().log();
        Ok(Categorical {
            backend: backend.clone(),
            log_probs: OnceLock::from(logits.clone()),
            probs: OnceLock::from(probs),
            logits,
            dims,
        })
    }

    /// Checks what torch's validation checks: no logit is NaN or `+inf` and every row has a
    /// finite one (a row of `-inf` logits, or of zero weights, is no distribution). Reads the
    /// logits back to the host (a device sync on a GPU): call it where you can afford one.
    /// Unvalidated, such a row draws its last category and has NaN probabilities.
    ///
    /// ```
    /// use burn::tensor::Tensor;
    /// use toto_fallback::{Backend, Error, NdArray};
    /// use toto_fallback::distr::Categorical;
    ///
    /// let cpu = NdArray::seeded(0);
    /// let logits = Tensor::<2>::from_floats([[0.0, 1.0], [f32::NEG_INFINITY, f32::NEG_INFINITY]], cpu.device());
    /// let err = Categorical::from_logits(&cpu, logits)?.validate().unwrap_err();
    /// assert!(matches!(err, Error::ParamValue { index: 2, .. }), "{err}"); // row 1 starts at 2
    /// # Ok::<(), toto_fallback::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ParamValue`] naming the first element of the first bad row (or the first NaN or
    /// `+inf`); [`Error::ReadBack`] if the device failed.
    pub fn validate(&self) -> Result<()> {
        let values = crate::backend::read_back("Categorical::validate", self.logits.clone())?;
        let k = self.dims[D - 1];
        let bad = |index: usize, requirement| {
            Err(Error::ParamValue {
                dist: NAME,
                param: "logits",
                requirement,
                index,
                value: values[index],
            })
        };
        if let Some(i) = values
            .iter()
            .position(|v| v.is_nan() || *v == f32::INFINITY)
        {
            return bad(
                i,
                "must hold no NaN or +inf (probs: non-negative and finite)",
            );
        }
        match values
            .chunks(k.max(1))
            .position(|row| !row.iter().any(|v| v.is_finite()))
        {
            Some(row) => bad(
                row * k,
                "must have a finite logit in every row (probs: a positive weight in every row)",
            ),
            None => Ok(()),
        }
    }

    /// The parameter's dims, checked: on the backend's device, `D >= 1` and `K >= 1`.
    fn check(backend: &B, param: &'static str, t: &Tensor<D>) -> Result<[usize; D]> {
        let dims = batch_shape(NAME, backend.device(), &[(param, t)])?;
        if D == 0 || dims[D - 1] == 0 {
            return Err(Error::ParamShape {
                dist: NAME,
                param,
                shape: dims.to_vec(),
                batch: vec![],
            });
        }
        Ok(dims)
    }

    /// The number of categories `K`.
    pub fn num_categories(&self) -> usize {
        self.dims[D - 1]
    }

    /// The batch shape, `[batch..]` (the parameter's shape without its last dimension).
    pub fn batch_shape(&self) -> &[usize] {
        &self.dims[..D - 1]
    }

    /// The device.
    pub fn device(&self) -> &Device {
        self.backend.device()
    }

    /// Normalised log-probabilities (`logits − logsumexp(logits)`), `[batch.., K]`; computed
    /// on first use and kept.
    pub fn logits(&self) -> Tensor<D> {
        self.log_probs
            .get_or_init(|| {
                // Shifted by the row maximum so no exponential overflows.
                let shifted = self.logits.clone().sub(self.logits.clone().max_dim(D - 1));
                let total = shifted.clone().exp().sum_dim(D - 1);
                shifted.sub(total.log())
            })
            .clone()
    }

    /// The logits as given, not normalised: what draws need (they are invariant to a shift of
    /// each row, and the backends' draws shift by the row maximum themselves).
    pub(crate) fn unnormalised_logits(&self) -> Tensor<D> {
        self.logits.clone()
    }

    /// Probabilities, `[batch.., K]`; computed on first use and kept.
    pub fn probs(&self) -> Tensor<D> {
        self.probs.get_or_init(|| self.logits().exp()).clone()
    }

    /// Category indices of shape `[sample.., batch..]` (`S = sample_shape.len() + D - 1`).
    ///
    /// # Errors
    /// [`Error::Rank`]; the backend's errors.
    pub fn sample<const S: usize>(&self, sample_shape: &[usize]) -> Result<Tensor<S, Int>> {
        let shape = full_shape::<S>(NAME, sample_shape, self.batch_shape())?;
        let n: usize = sample_shape.iter().product();
        Ok(self.sample_flat(n)?.reshape_exact(shape))
    }

    /// `[n, batch_numel, 1]` indices, through the backend's `categorical` op.
    pub(crate) fn sample_flat(&self, n: usize) -> Result<Tensor<3, Int>> {
        let k = self.num_categories();
        let b: usize = self.batch_shape().iter().product();
        let idx = self
            .backend
            .categorical(self.logits.clone().reshape_exact([b, k]), n)?; // [n, B]
        Ok(idx.reshape_exact([n, b, 1]))
    }

    /// The entropy `−Σ_k p_k ln p_k` in nats, of shape `[batch..]` (`E = D − 1`).
    ///
    /// # Errors
    /// [`Error::Rank`] unless `E = D − 1`.
    pub fn entropy<const E: usize>(&self) -> Result<Tensor<E>> {
        if E + 1 != D {
            return Err(Error::Rank {
                dist: NAME,
                what: "the entropy",
                needed: D - 1,
                asked: E,
            });
        }
        let mut shape = [0; E];
        shape.copy_from_slice(self.batch_shape());
        let lp = self.logits();
        // 0 · ln 0 = 0 for categories of probability 0 (logit -inf).
        let plogp = lp.clone().exp().mul(lp.clone()).mask_fill(lp.is_inf(), 0.0);
        Ok(plogp.sum_dim(D - 1).neg().reshape_exact(shape))
    }

    /// `ln P(X = index)` for `index` of shape `[sample.., batch..]` (broadcast like `log_prob` of
    /// the continuous distributions); out-of-range indices are clamped into `[0, K-1]`.
    ///
    /// # Errors
    /// [`Error::ValueShape`], [`Error::Rank`].
    pub fn log_prob<const S: usize>(&self, index: Tensor<S, Int>) -> Result<Tensor<S>> {
        let shape = value_shape(NAME, index.dims(), self.batch_shape())?;
        let k = self.num_categories();
        let b: usize = self.batch_shape().iter().product();
        let n = shape.iter().product::<usize>() / b.max(1);
        let index = index
            .broadcast_to(shape)
            .reshape_exact([n, b, 1])
            .clamp(0, k as i64 - 1);
        let lp = self
            .logits()
            .reshape_exact([1, b, k])
            .broadcast_to([n, b, k]);
        Ok(lp.gather(2, index).reshape_exact(shape))
    }
}
