//! Reading safetensors checkpoints by tensor name: one file or the shards of a
//! `model.safetensors.index.json`, any float dtype converted to f32, every missing, mis-shaped,
//! unreadable or unexpected tensor collected into one [`Error::Checkpoint`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData, bf16, f16};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};

use crate::error::{CheckpointProblems, Error, Result};

/// The bytes of a checkpoint file: memory-mapped, or owned.
pub(crate) enum Bytes {
    /// A read-only map of a file.
    Mapped(memmap2::Mmap),
    /// Bytes in memory.
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// Maps `path` read-only.
///
/// # Errors
/// [`Error::Io`] naming the path.
pub(crate) fn map_file(path: &Path) -> Result<Bytes> {
    let io = |e: std::io::Error| Error::io(path.display(), e);
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only. Like any file map (burn-store maps files too), another
    // process writing the file during a load may show torn data, which the header and shape
    // checks then report; it cannot make this process read outside the map.
    #[allow(unsafe_code)] // A read-only file map (docs/architecture.md, "Unsafe code").
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(Bytes::Mapped(map))
}

/// One checkpoint file: its bytes, where its data starts, and its header.
struct File {
    bytes: Bytes,
    data_start: usize,
    metadata: Metadata,
    label: String,
}

impl File {
    fn new(bytes: Bytes, label: String) -> Result<Self> {
        let (header, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| {
            CheckpointProblems::unreadable(label.clone(), format!("not a safetensors file: {e}"))
        })?;
        // The data must cover every tensor's offsets (read_metadata checks they are contiguous).
        if metadata.data_len() > bytes.len().saturating_sub(8 + header) {
            return Err(CheckpointProblems::unreadable(
                label,
                "truncated: the header describes more data than the file holds".to_owned(),
            ));
        }
        Ok(File {
            bytes,
            data_start: 8 + header,
            metadata,
            label,
        })
    }

    fn data(&self, info: &TensorInfo) -> &[u8] {
        let (start, end) = info.data_offsets;
        &self.bytes[self.data_start + start..self.data_start + end]
    }
}

/// A checkpoint's tensors by name, read on demand as f32.
pub(crate) struct Checkpoint {
    files: Vec<File>,
    /// Tensor name → the file that holds it.
    names: BTreeMap<String, usize>,
    taken: BTreeSet<String>,
    problems: CheckpointProblems,
}

impl Checkpoint {
    /// The checkpoint of a model directory: the shards named by `model.safetensors.index.json`
    /// when it exists, else `model.safetensors`.
    ///
    /// # Errors
    /// [`Error::Io`] if a file cannot be opened; [`Error::Checkpoint`] if the index or a file
    /// is not what it claims to be.
    pub(crate) fn open_dir(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        if !index.exists() {
            return Self::open_file(&dir.join("model.safetensors"));
        }
        let label = index.display().to_string();
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&label, e))?;
        let shards = shard_names(&text).map_err(|reason| {
            CheckpointProblems::unreadable(label.clone(), format!("bad index: {reason}"))
        })?;
        let files = shards
            .iter()
            .map(|name| {
                let path = dir.join(name);
                File::new(map_file(&path)?, path.display().to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_files(files, label)
    }

    /// The checkpoint of one safetensors file.
    ///
    /// # Errors
    /// As [`Checkpoint::open_dir`].
    pub(crate) fn open_file(path: &Path) -> Result<Self> {
        let label = path.display().to_string();
        let file = File::new(map_file(path)?, label.clone())?;
        Self::from_files(vec![file], label)
    }

    /// The checkpoint held by `bytes` (a safetensors file in memory).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] if the bytes are not a safetensors file.
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let label = "<bytes>".to_owned();
        let file = File::new(Bytes::Owned(bytes), label.clone())?;
        Self::from_files(vec![file], label)
    }

    fn from_files(files: Vec<File>, label: String) -> Result<Self> {
        let mut names = BTreeMap::new();
        let mut problems = CheckpointProblems::new(label);
        for (i, file) in files.iter().enumerate() {
            for name in file.metadata.tensors().keys() {
                if names.insert(name.clone(), i).is_some() {
                    problems
                        .unreadable
                        .push(format!("{name}: in more than one shard ({})", file.label));
                }
            }
        }
        Ok(Checkpoint {
            files,
            names,
            taken: BTreeSet::new(),
            problems,
        })
    }

    /// Whether the checkpoint has a tensor `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    /// The f32 values and shape of tensor `name`, or `None` (recorded as missing or
    /// unreadable).
    fn read(&mut self, name: &str) -> Option<(Vec<f32>, Vec<usize>)> {
        let Some(&i) = self.names.get(name) else {
            self.problems.missing.push(name.to_owned());
            return None;
        };
        self.taken.insert(name.to_owned());
        let file = &self.files[i];
        let info = file.metadata.info(name)?;
        match to_f32(info.dtype, file.data(info)) {
            Some(values) => Some((values, info.shape.clone())),
            None => {
                self.problems.mismatched.push(format!(
                    "{name}: expected a floating-point dtype (F32, or F16, BF16, F64 converted \
                     to F32), found {:?}",
                    info.dtype
                ));
                None
            }
        }
    }

    /// Tensor `name` of `shape` on `device`, or `None` with the problem recorded.
    pub(crate) fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Option<Tensor<D>> {
        let (values, found) = self.read(name)?;
        if found != shape {
            self.problems
                .mismatched
                .push(format!("{name}: expected shape {shape:?}, found {found:?}"));
            return None;
        }
        Some(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// A PyTorch linear weight `name` (`[out, in]` in the file) as `[in, out]`, the layout of
    /// `x · W`.
    pub(crate) fn linear_weight(
        &mut self,
        name: &str,
        [inputs, outputs]: [usize; 2],
        device: &Device,
    ) -> Option<Tensor<2>> {
        let (values, found) = self.read(name)?;
        if found != [outputs, inputs] {
            self.problems.mismatched.push(format!(
                "{name}: expected shape {:?}, found {found:?}",
                [outputs, inputs]
            ));
            return None;
        }
        let mut t = vec![0f32; values.len()];
        for (o, row) in values.chunks_exact(inputs.max(1)).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                t[i * outputs + o] = v;
            }
        }
        Some(Tensor::from_data(
            TensorData::new(t, [inputs, outputs]),
            device,
        ))
    }

    /// The value of the 0-dimensional tensor `name` (or of one element), or `None` recorded.
    pub(crate) fn scalar(&mut self, name: &str) -> Option<f32> {
        let (values, found) = self.read(name)?;
        if values.len() != 1 {
            self.problems
                .mismatched
                .push(format!("{name}: expected a scalar, found shape {found:?}"));
            return None;
        }
        Some(values[0])
    }

    /// `Ok` when every tensor asked for was read and every tensor of the checkpoint was asked
    /// for (except those `ignored` accepts); else [`Error::Checkpoint`] listing every problem.
    pub(crate) fn finish(mut self, ignored: impl Fn(&str) -> bool) -> Result<()> {
        let unexpected = self
            .names
            .keys()
            .filter(|n| !self.taken.contains(*n) && !ignored(n))
            .cloned()
            .collect();
        self.problems.unexpected = unexpected;
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Checkpoint(Box::new(self.problems)))
        }
    }
}

/// The shard files of a `model.safetensors.index.json`, each once, in order.
pub(crate) fn shard_names(text: &str) -> std::result::Result<Vec<String>, String> {
    let index: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or("no `weight_map` object")?;
    let mut shards = BTreeSet::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| format!("the shard of `{tensor}` is not a string"))?;
        // Shards are files beside the index, never paths elsewhere.
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(format!(
                "the shard `{file}` of `{tensor}` is not a file name"
            ));
        }
        shards.insert(file.to_owned());
    }
    Ok(shards.into_iter().collect())
}

/// Little-endian `data` of `dtype` as f32 values; `None` for a dtype that is not a float.
pub(crate) fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let values = match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b) as f32
            })
            .collect(),
        _ => return None,
    };
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_shards_are_files_beside_it() {
        let index = r#"{"metadata": {}, "weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors", "c": "m-1.safetensors"}}"#;
        assert_eq!(
            shard_names(index).unwrap(),
            ["m-1.safetensors", "m-2.safetensors"]
        );
        assert!(shard_names(r#"{"weight_map": {"a": "../x.safetensors"}}"#).is_err());
        assert!(shard_names(r#"{"weight_map": {"a": 3}}"#).is_err());
        assert!(shard_names("[]").is_err());
    }

    #[test]
    fn dtypes_convert_to_f32() {
        let f16s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect();
        assert_eq!(to_f32(Dtype::F16, &f16s), Some(vec![1.5, -2.0]));
        assert_eq!(to_f32(Dtype::F64, &0.25f64.to_le_bytes()), Some(vec![0.25]));
        assert_eq!(to_f32(Dtype::I64, &[0; 8]), None);
    }
}
