//! Safetensors files, written here (tch's writer takes no metadata; Hugging Face expects
//! `{"format": "pt"}`) and read back through tch.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use tch::{Device, Kind, Tensor};

/// Writes `tensors` as a safetensors file with `metadata`. Tensors are converted to
/// contiguous CPU copies of their own kind.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    }
    let mut offset = 0usize;
    let mut cpu = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
        let dtype = match t.kind() {
            Kind::Float => "F32",
            Kind::BFloat16 => "BF16",
            Kind::Half => "F16",
            Kind::Int64 => "I64",
            other => bail!("cannot save tensor {name} of kind {other:?}"),
        };
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype,
                "shape": t.size(),
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
        cpu.push((t, bytes));
    }
    let mut json = serde_json::to_vec(&header)?;
    // The data section starts 8-byte aligned, as the reference writer pads it.
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 22, file);
    let write = |out: &mut BufWriter<File>| -> Result<()> {
        out.write_all(&(json.len() as u64).to_le_bytes())?;
        out.write_all(&json)?;
        let mut buf = Vec::new();
        for (t, bytes) in &cpu {
            buf.resize(*bytes, 0);
            t.f_copy_data_u8(&mut buf, t.numel())?;
            out.write_all(&buf)?;
        }
        out.flush()?;
        out.get_ref().sync_all()?;
        Ok(())
    };
    write(&mut out).with_context(|| format!("writing {}", path.display()))
}

/// Reads a safetensors file into CPU tensors by name.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let tensors = Tensor::read_safetensors(path)
        .with_context(|| format!("reading {} (missing or corrupt)", path.display()))?;
    Ok(tensors.into_iter().collect())
}
