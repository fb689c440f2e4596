//! The heads kernel's launch, as a burn backend extension (CubeCL runtimes, with or without
//! fusion).

use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;

use cubecl::{CubeDim, calculate_cube_count_elemwise};

use super::kernel::{heads_kernel, lanes};
use crate::backend::ops::launch::output;

/// What the kernel does to the heads besides moving them (see [`heads_kernel`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HeadsArgs {
    pub(crate) heads: usize,
    pub(crate) groups: usize,
    pub(crate) d: usize,
    pub(crate) rotated: usize,
    pub(crate) eps: f32,
    pub(crate) factor: f32,
    pub(crate) norm: bool,
    pub(crate) q_weighted: bool,
    pub(crate) k_weighted: bool,
    pub(crate) scaled: bool,
    pub(crate) rotate: bool,
    pub(crate) xpos: bool,
}

/// The queries' and keys' shapes of fused projections of shape `qkv`.
fn heads_shapes(qkv: &Shape, args: &HeadsArgs) -> (Shape, Shape) {
    let [n, s] = [qkv[0], qkv[1]];
    (
        Shape::new([n, args.heads, s, args.d]),
        Shape::new([n, args.groups, s, args.d]),
    )
}

/// The heads kernel's launch.
#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub(crate) trait AttentionHeadsOps: burn::backend::Backend {
    /// The query heads `[n, heads, s, d]` and key heads `[n, groups, s, d]` of `qkv`
    /// (`[n, s, width]`), prepared as `args` says; the vectors and tables a flag leaves unread
    /// may be placeholders.
    #[fusion(meta = |qkv, _qw, _kw, _m, _cos, _sin, _scale, args| {
        let (q, k) = heads_shapes(&qkv.shape, args);
        (
            burn::backend::fusion::custom::TensorSpec::new(q, qkv.dtype),
            burn::backend::fusion::custom::TensorSpec::new(k, qkv.dtype),
        )
    })]
    #[allow(clippy::too_many_arguments)]
    fn attention_heads(
        qkv: FloatTensor<Self>,
        q_weight: FloatTensor<Self>,
        k_weight: FloatTensor<Self>,
        multiplier: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        args: HeadsArgs,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl AttentionHeadsOps for CubeBackend {
    fn attention_heads(
        qkv: CubeTensor,
        q_weight: CubeTensor,
        k_weight: CubeTensor,
        multiplier: CubeTensor,
        cos: CubeTensor,
        sin: CubeTensor,
        scale: CubeTensor,
        args: HeadsArgs,
    ) -> (CubeTensor, CubeTensor) {
        let [qkv, q_weight, k_weight, multiplier, cos, sin, scale] =
            [qkv, q_weight, k_weight, multiplier, cos, sin, scale].map(into_contiguous);
        let (q_shape, k_shape) = heads_shapes(qkv.meta.shape(), &args);
        let [n, s, width] = [
            qkv.meta.shape()[0],
            qkv.meta.shape()[1],
            qkv.meta.shape()[2],
        ];
        let rows = n * s * (args.heads + args.groups);
        let (q, _, _) = output(&qkv, q_shape, rows);
        let (k, _, _) = output(&qkv, k_shape, rows);
        if rows > 0 && args.d > 0 {
            let client = qkv.client.clone();
            // A cube of `lanes` threads per head.
            let lanes = lanes(args.d);
            let dim = CubeDim::new_1d(lanes as u32);
            let count = calculate_cube_count_elemwise(&client, rows * lanes, dim);
            heads_kernel::launch(
                &client,
                count,
                dim,
                qkv.into_buffer_arg(),
                q_weight.into_buffer_arg(),
                k_weight.into_buffer_arg(),
                multiplier.into_buffer_arg(),
                cos.into_buffer_arg(),
                sin.into_buffer_arg(),
                scale.into_buffer_arg(),
                q.clone().into_buffer_arg(),
                k.clone().into_buffer_arg(),
                rows as u32,
                args.heads as u32,
                args.groups as u32,
                s as u32,
                width as u32,
                args.rotated as u32,
                args.eps,
                args.factor,
                args.d,
                lanes,
                args.norm,
                args.q_weighted,
                args.k_weighted,
                args.scaled,
                args.rotate,
                args.xpos,
            );
        }
        (q, k)
    }
}
