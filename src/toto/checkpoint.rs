//! Toto's checkpoint: loading `model.safetensors` through burn-store (accepting every published
//! key naming and f16/bf16/f64 weights) and saving it in the published layout.

use std::path::Path;

use burn::store::{
    ApplyError, BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::backbone::TotoWeights;
use crate::error::{CheckpointProblems, Error, Result};
use crate::nn::checkpoint::{map_file, to_f32};

/// Checkpoint key → module path, applied in order: the `model.` prefix goes, Python's `wQKV`/`wO`
/// become snake case, and both MLP namings (`mlp.0.w12`/`mlp.0.w3` of xFormers' fused SwiGLU,
/// `mlp.0`/`mlp.2` of the plain `nn.Sequential`) land on `mlp.w12`/`mlp.w3`.
const RENAMES: [(&str, &str); 7] = [
    (r"^model\.", ""),
    (r"\.attention\.wQKV\.", ".attention.wqkv."),
    (r"\.attention\.wO\.", ".attention.wo."),
    (r"\.mlp\.0\.w12\.", ".mlp.w12."),
    (r"\.mlp\.0\.w3\.", ".mlp.w3."),
    (r"\.mlp\.0\.(weight|bias)$", ".mlp.w12.$1"),
    (r"\.mlp\.2\.(weight|bias)$", ".mlp.w3.$1"),
];

/// A module path as the published checkpoint names it (for error messages).
pub(crate) fn published_name(path: &str) -> String {
    let name = path
        .replace(".attention.wqkv.", ".attention.wQKV.")
        .replace(".attention.wo.", ".attention.wO.")
        .replace(".mlp.w12.", ".mlp.0.w12.")
        .replace(".mlp.w3.", ".mlp.0.w3.");
    format!("model.{name}")
}

/// Where the tensors come from.
pub(crate) enum Source<'a> {
    File(&'a Path),
    Bytes(Vec<u8>),
}

/// Loads `source` into `weights` (which has the config's shapes), or lists every problem.
pub(crate) fn load_into(weights: &mut TotoWeights, source: Source<'_>) -> Result<()> {
    let (mut store, label) = match source {
        Source::File(path) => {
            let label = path.display().to_string();
            let map = map_file(path)?;
            let store = match to_f32_file(&map, &label)? {
                None => SafetensorsStore::from_file(path),
                Some(converted) => SafetensorsStore::from_bytes(Some(converted)),
            };
            (store, label)
        }
        Source::Bytes(bytes) => {
            let label = "<bytes>".to_owned();
            let bytes = to_f32_file(&bytes, &label)?.unwrap_or(bytes);
            (SafetensorsStore::from_bytes(Some(bytes)), label)
        }
    };
    for (from, to) in RENAMES {
        store = store.with_key_remapping(from, to);
    }
    let mut store = store
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true)
        .validate(false);
    let result = weights
        .load_from(&mut store)
        .map_err(|e| CheckpointProblems::unreadable(label.clone(), e.to_string()))?;
    let mut problems = CheckpointProblems::new(label);
    problems.missing = result
        .missing
        .iter()
        .map(|(path, _)| published_name(path))
        .collect();
    // Rotary buffers (`rotary_emb.freqs`, `.scale`) are recomputed, never loaded.
    problems.unexpected = result
        .unused
        .iter()
        .filter(|k| !k.contains("rotary_emb."))
        .map(|k| published_name(k))
        .collect();
    for e in &result.errors {
        match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => problems.mismatched.push(format!(
                "{}: expected shape {expected:?}, found {found:?}",
                published_name(path)
            )),
            ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => problems.mismatched.push(format!(
                "{}: expected dtype {expected:?}, found {found:?}",
                published_name(path)
            )),
            other => problems.unreadable.push(other.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Checkpoint(Box::new(problems)))
    }
}

/// Checks a safetensors file before burn-store reads it: its header must parse and cover the
/// data exactly, and every tensor must be floating point. `None` when every tensor is f32 (load
/// as is); the file rewritten with every tensor in f32 when some are f16, bf16 or f64 (burn's
/// CPU backend has no f16, and burn-store would hand it the file's dtype).
fn to_f32_file(bytes: &[u8], label: &str) -> Result<Option<Vec<u8>>> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| {
        CheckpointProblems::unreadable(
            label.to_owned(),
            format!("not a complete safetensors file: {e}"),
        )
    })?;
    let mut problems = CheckpointProblems::new(label.to_owned());
    let mut convert = false;
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in &tensors {
        match view.dtype() {
            Dtype::F32 => {}
            Dtype::F16 | Dtype::BF16 | Dtype::F64 => convert = true,
            other => problems.mismatched.push(format!(
                "{name}: expected a floating-point dtype (F32, or F16, BF16, F64 converted to \
                 F32), found {other:?}"
            )),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Checkpoint(Box::new(problems)));
    }
    if !convert {
        return Ok(None);
    }
    let converted: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .into_iter()
        .map(|(name, view)| {
            let data = view.data();
            let bytes: Vec<u8> = match view.dtype() {
                Dtype::F32 => data.to_vec(),
                // Floating point (the loop above let nothing else through).
                dtype => to_f32(dtype, data)
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(f32::to_le_bytes)
                    .collect(),
            };
            (name, bytes, view.shape().to_vec())
        })
        .collect();
    let unreadable = |e: safetensors::SafeTensorError| {
        CheckpointProblems::unreadable(label.to_owned(), format!("converting to f32: {e}"))
    };
    let views = converted
        .iter()
        .map(|(name, data, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|view| (name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    let metadata = SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().clone());
    safetensors::serialize(views, metadata)
        .map(Some)
        .map_err(unreadable)
}

/// Module path → published key, applied in order when saving: the inverse of [`RENAMES`], into
/// the naming of the published checkpoint (`model.` prefix, xFormers' fused MLP names).
const SAVE_RENAMES: [(&str, &str); 5] = [
    (r"\.attention\.wqkv\.", ".attention.wQKV."),
    (r"\.attention\.wo\.", ".attention.wO."),
    (r"\.mlp\.w12\.", ".mlp.0.w12."),
    (r"\.mlp\.w3\.", ".mlp.0.w3."),
    (r"^", "model."),
];

/// `weights` as the bytes of a safetensors file in the published naming and layout
/// (PyTorch's `[out, in]` linear weights, f32).
pub(crate) fn save_bytes(weights: &TotoWeights) -> Result<Vec<u8>> {
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
