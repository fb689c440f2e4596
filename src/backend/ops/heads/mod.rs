//! The queries and keys of fused attention projections on CubeCL runtimes
//! (`LayerOps::attention_heads`, and `LayerOps::attention` before its core): every attention
//! layer of both Toto generations asks for them.
//!
//! The composition (`AttentionSpec::queries_keys_values`) runs each head's RMSNorm as a
//! reduction and a division, the query's per-dimension scale, and the rotation as a flip, an
//! elementwise sum of products and, where only part of a head rotates, a concatenation (two
//! slice writes) — about 14 launches per layer, in a pass whose small batches are bound by
//! launches (CubeCL's profile of a Toto 2.0 session update: 28 launches per time layer, half of
//! them these). Here one launch prepares every query and key head: a cube per (sequence,
//! position, head), a thread per value, reads the head from the fused projection, normalises it
//! (a tree sum in shared memory), scales and rotates it (the pair's partner read from shared
//! memory), and writes it in the `[N, heads, S, d]` layout attention reads. The values stay a
//! view of the projection, as in the composition.
//!
//! A first cut with a thread per head (each thread reading its head's values one after the
//! other) made a Toto 2.0 session's update 15–25% faster on an H100 but a full forecast of 256
//! series 40% slower (106 → 146 ms): its prefill's 1.6 million heads per layer were read
//! 64 values per thread, no two threads of a warp on one cache line.
//!
//! The result is the composition's up to f32 rounding (the norm's sum runs in another order).

mod kernel;
mod launch;
pub(crate) mod tensor;
