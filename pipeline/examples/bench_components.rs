//! Wall time and peak memory of a split dedup run's components stage per million duplicate
//! pairs (`scripts/bench-components`): `write DIR PAIRS` writes pairs files as the pairs
//! stage does (groups of 2-4 documents drawn from 10x as many documents, so clusters chain
//! across groups), `replay DIR [MEMORY_MB]` replays them as the components stage does (in
//! memory, or spilling to disk past MEMORY_MB) and prints the figures (peak RSS of this
//! process, from /proc/self/status).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pipeline::dedup::components::BoundedComponents;
use pipeline::dedup::partition::{Group, read_pairs, write_pairs};

const FILES: usize = 16;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") if args.len() == 4 => {
            let pairs: u64 = args[3].parse().context("PAIRS")?;
            write(Path::new(&args[2]), pairs)
        }
        Some("replay") if args.len() == 3 => replay(Path::new(&args[2]), None),
        Some("replay") if args.len() == 4 => {
            let mb: u64 = args[3].parse().context("MEMORY_MB")?;
            replay(Path::new(&args[2]), Some(mb))
        }
        _ => bail!("usage: bench_components write DIR PAIRS | replay DIR [MEMORY_MB]"),
    }
}

fn write(dir: &Path, pairs: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let docs = pairs * 10;
    let mut written = 0u64;
    let per_file = pairs.div_ceil(FILES as u64);
    for f in 0..FILES {
        let mut groups: Vec<Group> = Vec::new();
        let mut in_file = 0;
        while in_file < per_file && written < pairs {
            let size = 2 + (next() % 3) as usize;
            let mut members: Vec<u64> = (0..size).map(|_| next() % docs).collect();
            members.sort_unstable();
            members.dedup();
            let leader = members[0];
            let group: Group = members
                .iter()
                .enumerate()
                .map(|(i, &d)| (d, (i > 0).then_some(leader)))
                .collect();
            in_file += group.len() as u64 - 1;
            written += group.len() as u64 - 1;
            groups.push(group);
        }
        write_pairs(&dir.join(format!("pairs-{f:04}.bin")), &groups)?;
    }
    println!(
        "wrote {written} pairs in {FILES} files under {}",
        dir.display()
    );
    Ok(())
}

fn replay(dir: &Path, memory_mb: Option<u64>) -> Result<()> {
    let started = Instant::now();
    let bound = memory_mb.map_or(u64::MAX, |mb| mb << 20);
    let spill = dir.join("spill");
    let mut components = BoundedComponents::new(bound, &spill);
    for f in 0..FILES {
        read_pairs(&dir.join(format!("pairs-{f:04}.bin")), |g| {
            components.replay(g)
        })?;
    }
    let (mut members, stats) = components.finish()?;
    let mut rows = 0u64;
    while members.next_below(u64::MAX)?.is_some() {
        rows += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    if spill.exists() {
        std::fs::remove_dir_all(&spill)?;
    }
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let million = stats.pairs as f64 / 1e6;
    let path = match memory_mb {
        None => "in memory".to_string(),
        Some(mb) => format!("bound {mb} MB, {} spills", stats.spills),
    };
    println!(
        "components ({path}): {} pairs, {} documents in clusters, {rows} member rows; {seconds:.2} s ({:.2} s per million pairs), peak RSS {:.0} MiB ({:.0} MiB per million pairs)",
        stats.pairs,
        stats.documents,
        seconds / million,
        peak_kib / 1024.0,
        peak_kib / 1024.0 / million
    );
    Ok(())
}
