//! Toto's checkpoint: loading `model.safetensors` through the crate's one checkpoint reader
//! (`nn::checkpoint`, the reader Toto 2.0 uses), with the published key namings as a table in
//! front of it, and saving it in the published layout through burn-store.

use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Tensor;

use super::attention::QkvLayout;
use super::backbone::TotoWeights;
use crate::error::{Error, Result};
use crate::nn::checkpoint::Checkpoint;

/// Module path → the checkpoint's names for it, each tried with and without the `model.`
/// prefix, in order: Python's `wQKV`/`wO` for the snake-case fields, and both MLP namings
/// (`mlp.0.w12`/`mlp.0.w3` of xFormers' fused SwiGLU, `mlp.0`/`mlp.2` of the plain
/// `nn.Sequential`) for `mlp.w12`/`mlp.w3`.
const NAMES: [(&str, &[&str]); 4] = [
    (".attention.wqkv.", &[".attention.wQKV."]),
    (".attention.wo.", &[".attention.wO."]),
    (".mlp.w12.", &[".mlp.0.w12.", ".mlp.0."]),
    (".mlp.w3.", &[".mlp.0.w3.", ".mlp.2."]),
];

/// The names a checkpoint may give the parameter at module path `path`, the published one
/// first (what a missing tensor is reported as).
fn checkpoint_names(path: &str) -> Vec<String> {
    let dotted = format!(".{path}");
    let spellings: Vec<String> = match NAMES.iter().find(|(field, _)| dotted.contains(field)) {
        Some((field, names)) => names.iter().map(|n| dotted.replacen(field, n, 1)).collect(),
        None => vec![dotted],
    };
    let bare = |s: &String| s[1..].to_owned();
    spellings
        .iter()
        .map(|s| format!("model{s}"))
        .chain(spellings.iter().map(bare))
        .collect()
}

/// Where the tensors come from.
pub(crate) enum Source<'a> {
    /// A model directory: `model.safetensors`, or the shards of its index.
    Dir(&'a Path),
    File(&'a Path),
    Bytes(Vec<u8>),
}

/// Fills every parameter of a module from the checkpoint by its module path
/// ([`checkpoint_names`]); linear weights are read as PyTorch's `[out, in]` and transposed.
struct Loader<'a> {
    checkpoint: &'a mut Checkpoint,
    /// The module path so far, and whether each level is a field of a `Linear`.
    path: Vec<(String, bool)>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_owned(), container_type == "Struct:Linear"));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path: Vec<&str> = self.path.iter().map(|(n, _)| n.as_str()).collect();
        let names = checkpoint_names(&path.join("."));
        let name = names
            .iter()
            .find(|n| self.checkpoint.has(n))
            .unwrap_or(&names[0]);
        let name = name.clone();
        let linear_weight = matches!(self.path.last(), Some((n, true)) if n == "weight");
        let checkpoint = &mut *self.checkpoint;
        param.map(|tensor| {
            let device = tensor.device();
            let dims = tensor.dims();
            let loaded = match (linear_weight, dims.as_slice()) {
                (true, &[inputs, outputs]) => checkpoint
                    .linear_weight(&name, [inputs, outputs], &device)
                    .map(|w| w.reshape(dims)),
                _ => checkpoint.tensor(&name, dims, &device),
            };
            loaded.unwrap_or(tensor)
        })
    }
}

/// `weights` (which has the config's shapes) filled from `source`, or every problem listed.
pub(crate) fn load_into(
    weights: TotoWeights,
    source: Source<'_>,
    heads: usize,
) -> Result<TotoWeights> {
    let mut checkpoint = match source {
        Source::Dir(dir) => Checkpoint::open_dir(dir)?,
        Source::File(path) => Checkpoint::open_file(path)?,
        Source::Bytes(bytes) => Checkpoint::from_bytes(bytes)?,
    };
    let weights = weights.map(&mut Loader {
        checkpoint: &mut checkpoint,
        path: Vec::new(),
    });
    // Rotary buffers (`rotary_emb.freqs`, `.scale`) are recomputed, never loaded.
    checkpoint.finish(|name| name.contains("rotary_emb."))?;
    Ok(weights.qkv_layout(heads, QkvLayout::Fused))
}

/// Module path → published key, applied in order when saving: the first of
/// [`checkpoint_names`], the naming of the published checkpoint (`model.` prefix, xFormers'
/// fused MLP names).
const SAVE_RENAMES: [(&str, &str); 5] = [
    (r"\.attention\.wqkv\.", ".attention.wQKV."),
    (r"\.attention\.wo\.", ".attention.wO."),
    (r"\.mlp\.w12\.", ".mlp.0.w12."),
    (r"\.mlp\.w3\.", ".mlp.0.w3."),
    (r"^", "model."),
];

/// `weights` as the bytes of a safetensors file in the published naming and layout
/// (PyTorch's `[out, in]` linear weights, f32).
pub(crate) fn save_bytes(weights: &TotoWeights, heads: usize) -> Result<Vec<u8>> {
    let weights = weights.clone().qkv_layout(heads, QkvLayout::Checkpoint);
    let mut store = SafetensorsStore::from_bytes(None);
    for (from, to) in SAVE_RENAMES {
        store = store.with_key_remapping(from, to);
    }
    let mut store = store
        .with_to_adapter(BurnToPyTorchAdapter)
        .metadata("format", "pt");
    let fail = |e: burn::store::SafetensorsStoreError| Error::io("<safetensors bytes>", e);
    weights.save_into(&mut store).map_err(fail)?;
    store.get_bytes().map_err(fail)
}
