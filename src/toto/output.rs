//! What one forward pass returns: the scaler's statistics and the mixture head's parameters,
//! and the output distribution they make.

use burn::tensor::Tensor;

use crate::backend::Backend;
use crate::distr::{Affine, Categorical, MixtureSameFamily, StudentT};
use crate::error::Result;

/// Toto's output distribution in normalised units: a mixture over `K` Student-T components per
/// series and time step, batch shape `[B, V, T]`.
pub type TotoMixture<B> = MixtureSameFamily<B, StudentT<B, 4>, 3, 4>;

/// The output distribution in data units: `loc + scale · mixture`.
pub type TotoDistribution<B> = Affine<TotoMixture<B>, 3>;

/// What one forward pass returns.
#[derive(Debug, Clone)]
pub struct TotoOutput<B: Backend> {
    pub(crate) backend: B,
    /// The scaler's location per time step, `[B, V, T'']`: over the whole input, or only over
    /// the steps processed when a cached pass continues the scaler's running statistics (see
    /// [`Toto::forward`](super::Toto::forward)). [`TotoOutput::distribution`] uses its last `T'` steps.
    pub loc: Tensor<3>,
    /// The scaler's scale per time step, shaped as [`TotoOutput::loc`].
    pub scale: Tensor<3>,
    /// Degrees of freedom `2 + max(softplus, eps)`, `[B, V, T', K]` (`T'`: the steps processed,
    /// all of `T` without a cache, the new patch with one).
    pub df: Tensor<4>,
    /// Component locations (normalised units), `[B, V, T', K]`.
    pub component_loc: Tensor<4>,
    /// Component scales `max(softplus, eps)` (normalised units), `[B, V, T', K]`.
    pub component_scale: Tensor<4>,
    /// Mixture logits, `[B, V, T', K]`.
    pub logits: Tensor<4>,
}

impl<B: Backend> TotoOutput<B> {
    /// The mixture in normalised units, batch shape `[B, V, T']`.
    ///
    /// # Errors
    /// Only if the head's tensors were replaced by ones of another shape or device.
    pub fn mixture(&self) -> Result<TotoMixture<B>> {
        let component = StudentT::new(
            &self.backend,
            self.df.clone(),
            self.component_loc.clone(),
            self.component_scale.clone(),
        )?;
        let mixing = Categorical::from_logits(&self.backend, self.logits.clone())?;
        MixtureSameFamily::new(mixing, component)
    }

    /// The output over only its last `n` steps (all of them if there are fewer): what a decode
    /// step needs, so that means and draws are not computed for the whole context.
    pub fn last_steps(&self, n: usize) -> Self {
        let [b, v, t, k] = self.df.dims();
        let cut = |x: &Tensor<4>| x.clone().slice([0..b, 0..v, t.saturating_sub(n)..t, 0..k]);
        TotoOutput {
            backend: self.backend.clone(),
            loc: self.loc.clone(),
            scale: self.scale.clone(),
            df: cut(&self.df),
            component_loc: cut(&self.component_loc),
            component_scale: cut(&self.component_scale),
            logits: cut(&self.logits),
        }
    }

    /// The distribution in data units: the mixture under the scaler's affine map, with `loc`
    /// and `scale` cut to the last `T'` steps (the prediction from patch `s` is de-normalised
    /// with patch `s`'s statistics, as toto-ts does).
    ///
    /// # Errors
    /// As [`TotoOutput::mixture`].
    pub fn distribution(&self) -> Result<TotoDistribution<B>> {
        let [b, v, t] = self.loc.dims();
        let t_out = self.df.dims()[2];
        let cut = |x: &Tensor<3>| x.clone().slice([0..b, 0..v, t - t_out..t]);
        Affine::new(self.mixture()?, cut(&self.loc), cut(&self.scale))
    }
}
