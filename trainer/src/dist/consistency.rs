//! Refuses a job whose ranks were started differently: every rank compares its resolved
//! config (and the manifests of the datasets it names) with rank 0's, field by field, and
//! all ranks stop with the differing fields and ranks named.

use anyhow::{Result, bail};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use crate::dist::group::ProcessGroup;

/// `(field, value)` pairs: the leaves of a JSON value, named by their dotted path.
pub fn flatten(value: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &path, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn hash64(s: &str) -> i64 {
    let digest = Sha256::digest(s.as_bytes());
    i64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]))
}

/// Checks that every rank holds the same `fields` as rank 0 (the same names and values);
/// errors on every rank otherwise, naming each differing field with the ranks it differs on.
pub fn check_same(group: &ProcessGroup, fields: &[(String, String)]) -> Result<()> {
    // Rank 0's field names travel to every rank, so all hash the same list.
    let names: Vec<String> = fields.iter().map(|(k, _)| k.clone()).collect();
    let encoded = serde_json::to_vec(&names)?;
    let len = Tensor::from_slice(&[encoded.len() as i64]);
    group.broadcast(&len, 0)?;
    let len = i64::try_from(&len)? as usize;
    let bytes = if group.rank() == 0 {
        Tensor::from_slice(&encoded)
    } else {
        Tensor::zeros([len as i64], (Kind::Uint8, tch::Device::Cpu))
    };
    group.broadcast(&bytes, 0)?;
    let names: Vec<String> = serde_json::from_slice(&Vec::<u8>::try_from(&bytes)?)?;
    // Names rank 0 lacks count too: one extra entry hashes this rank's field list.
    let mut mine: Vec<i64> = names
        .iter()
        .map(|n| {
            fields
                .iter()
                .find(|(k, _)| k == n)
                .map_or(hash64("\u{0}missing"), |(_, v)| hash64(v))
        })
        .collect();
    let own_names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    mine.push(hash64(&own_names.join("\n")));
    let n = mine.len() as i64;
    let all = Tensor::zeros([group.size() as i64 * n], (Kind::Int64, tch::Device::Cpu));
    group.all_gather(&all, &Tensor::from_slice(&mine))?;
    let all = Vec::<i64>::try_from(&all)?;
    let mut diffs = Vec::new();
    for (i, name) in names
        .iter()
        .chain(std::iter::once(&"(the set of fields)".to_string()))
        .enumerate()
    {
        let ranks: Vec<String> = (1..group.size())
            .filter(|&r| all[r * n as usize + i] != all[i])
            .map(|r| r.to_string())
            .collect();
        if !ranks.is_empty() {
            let here = fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            diffs.push(match (group.rank(), here) {
                (r, Some(v)) if r != 0 && ranks.contains(&r.to_string()) => format!(
                    "{name} (differs from rank 0 on rank {}; here {v})",
                    ranks.join(", ")
                ),
                _ => format!("{name} (differs from rank 0 on rank {})", ranks.join(", ")),
            });
        }
    }
    // Every rank reaches the same verdict from the same gathered hashes.
    if !diffs.is_empty() {
        bail!(
            "the ranks were started with different configs or datasets: {}",
            diffs.join("; ")
        );
    }
    Ok(())
}
