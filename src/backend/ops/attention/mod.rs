//! Attention of a few queries over a KV cache on CubeCL runtimes: what a decode step and a
//! streaming session's pass ask of every time layer (1 to 16 queries per sequence against the
//! cache's written entries, masked causally or by a blocked mask such as Toto 2.0's groups).
//!
//! burn's batched `matmul` serves such products badly: the scores of 5 queries against ~80 keys
//! for 6144 sequence-heads took as long as those of 68 queries (2.8 ms against 3.0 ms per layer
//! on an H100), and the composition launches two products, a mask and a softmax. The kernel
//! here runs the row's scores, an online softmax (running maximum and sum, rescaled as a larger
//! score arrives) and the weighted sum of the values in one launch that reads each key and
//! value once per query, only the entries the query may see (under a blocked mask, each key's
//! flag, then the open keys). Two launches of it: with few query rows (a pass over up to a
//! few hundred series), a cube of 32 threads per row that score 32 keys at a time, one each,
//! and split the output columns; with many rows over more than 32 keys, a thread per row. On an
//! H100 a thread per row left a pass of 16 series with ~2,000 rows scoring ~70 keys one after
//! the other (1.1–1.3 ms a layer, slower than the same layer at 256 series), the cube per row
//! 0.10 ms; at 256 series (30,720 rows) the thread per row took 0.33 ms a layer and the cube
//! per row 0.72 ms.
//! The result is the composition's up to f32 rounding (the sums' order differs).

mod kernel;
mod launch;
pub(crate) mod tensor;

/// The most queries per sequence the kernel serves; longer blocks (a prefill) run the
/// composition, whose products are efficient at that size.
pub(crate) const MAX_QUERIES: usize = 16;

/// The largest head width the kernels serve (the thread per row keeps a query and a row's
/// sums in per-thread arrays).
pub(crate) const MAX_HEAD: usize = 256;
