//! The input format of the `checkpoint_loader` fuzz target, shared by the target
//! (`fuzz/fuzz_targets/checkpoint_loader.rs`) and the regression test that replays its corpus.
//!
//! An input is the text of a `config.json`, a NUL byte, then the bytes of a
//! `model.safetensors`. Everything reachable must return `Ok` or a typed `Error`: a panic is a
//! bug.

use toto_fallback::toto::{Toto, TotoConfig};
use toto_fallback::{Error, NdArray};

/// The largest model the harness builds: the target is the parser, not the allocator (a
/// config of up to [`toto_fallback::MAX_PARAMETERS`] is valid, and building it takes
/// time and memory a fuzzer should spend on inputs).
pub const FUZZ_MAX_PARAMETERS: usize = 1 << 18;

/// Splits `data` into config text and checkpoint bytes, parses the config and loads the
/// checkpoint on the CPU backend.
pub fn load_checkpoint_input(data: &[u8]) -> Result<(), Error> {
    let (config, weights) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(config) else {
        return Ok(()); // config.json is text; serde_json takes &str
    };
    let config = TotoConfig::from_json(text)?;
    if config.parameter_count() > FUZZ_MAX_PARAMETERS {
        return Ok(());
    }
    Toto::from_safetensors_bytes(&NdArray::seeded(0), config, weights.to_vec()).map(drop)
}

/// `config` and `weights` as one fuzz input.
pub fn checkpoint_input(config: &str, weights: &[u8]) -> Vec<u8> {
    let mut data = config.as_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(weights);
    data
}
