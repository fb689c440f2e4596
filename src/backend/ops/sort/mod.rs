//! The sort of a tensor's first dimension on CubeCL runtimes (`LayerOps::sort_first`): what
//! Toto 2.0 asks of every forecast, its 9 quantile levels sorted at each step of each series.
//!
//! The composition (`composed::sort_first`, a bitonic network of burn ops) runs 10 stages for
//! 9 values, each a handful of launches, plus the NaN handling and the padding to 16: 60 launches
//! of the ~600 of a Toto 2.0 pass (CubeCL's profile on an H100), where a small pass is bound by
//! launches. The kernel sorts 8,192 columns of 9 values in ~50 µs there.
//! Here one launch sorts every column: a thread per column reads its values (consecutive
//! threads, consecutive columns), insertion-sorts them in registers, NaN last and equal values
//! in their order, and writes them back.

mod kernel;
mod launch;
pub(crate) mod tensor;

/// The longest column the kernel sorts (its values are held per thread); longer ones run the
/// composition.
pub(crate) const MAX_SORT: usize = 32;
