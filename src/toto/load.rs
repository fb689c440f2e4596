//! Loading `model.safetensors` through burn-store, accepting every published key naming.

use std::path::Path;

use burn::store::{
    ApplyError, BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};

use super::model::TotoWeights;
use crate::error::{Error, Result};

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
            // burn-store maps the file lazily; check it can be opened first for a clear error.
            std::fs::File::open(path).map_err(|e| Error::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            (
                SafetensorsStore::from_file(path),
                path.display().to_string(),
            )
        }
        Source::Bytes(bytes) => (
            SafetensorsStore::from_bytes(Some(bytes)),
            "<bytes>".to_owned(),
        ),
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
        .map_err(|e| Error::Checkpoint {
            path: label.clone(),
            missing: vec![],
            unexpected: vec![],
            mismatched: vec![],
            unreadable: vec![e.to_string()],
        })?;
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(path, _)| published_name(path))
        .collect();
    // Rotary buffers (`rotary_emb.freqs`, `.scale`) are recomputed, never loaded.
    let unexpected: Vec<String> = result
        .unused
        .iter()
        .filter(|k| !k.contains("rotary_emb."))
        .map(|k| published_name(k))
        .collect();
    let mut mismatched = Vec::new();
    let mut unreadable = Vec::new();
    for e in &result.errors {
        match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => mismatched.push(format!(
                "{}: expected shape {expected:?}, found {found:?}",
                published_name(path)
            )),
            ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => mismatched.push(format!(
                "{}: expected dtype {expected:?}, found {found:?}",
                published_name(path)
            )),
            other => unreadable.push(other.to_string()),
        }
    }
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() && unreadable.is_empty()
    {
        Ok(())
    } else {
        Err(Error::Checkpoint {
            path: label,
            missing,
            unexpected,
            mismatched,
            unreadable,
        })
    }
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
    let fail = |e: burn::store::SafetensorsStoreError| Error::Io {
        path: "<safetensors bytes>".to_owned(),
        reason: e.to_string(),
    };
    weights.save_into(&mut store).map_err(fail)?;
    store.get_bytes().map_err(fail)
}
