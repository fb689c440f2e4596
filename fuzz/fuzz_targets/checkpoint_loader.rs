//! Fuzzes the config + checkpoint loader: `TotoConfig::from_json` then
//! `Toto::from_safetensors_bytes` on the CPU backend. An input is config text, a NUL byte, and
//! safetensors bytes (see `tests/common/fuzz_input.rs`, shared with the regression test).
#![no_main]

#[path = "../../tests/suite/common/fuzz_input.rs"]
#[allow(dead_code)] // the regression tests use the rest
mod fuzz_input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Ok or a typed error are both fine; a panic or an abort is a finding.
    let _ = fuzz_input::load_checkpoint_input(data);
});
