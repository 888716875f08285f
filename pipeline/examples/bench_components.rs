//! Wall time and peak memory of a split dedup run's components stage per million duplicate
//! pairs (`scripts/bench-components`): `write DIR PAIRS` writes pairs files as the pairs
//! stage does (groups of 2-4 documents drawn from 10x as many documents, so clusters chain
//! across groups), `replay DIR` replays them as the components stage does and prints the
//! figures (peak RSS of this process, from /proc/self/status).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use pipeline::dedup::partition::{Group, SparseUnionFind, read_pairs, write_pairs};

const FILES: usize = 16;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") if args.len() == 4 => {
            let pairs: u64 = args[3].parse().context("PAIRS")?;
            write(Path::new(&args[2]), pairs)
        }
        Some("replay") if args.len() == 3 => replay(Path::new(&args[2])),
        _ => bail!("usage: bench_components write DIR PAIRS | replay DIR"),
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

fn replay(dir: &Path) -> Result<()> {
    let started = Instant::now();
    let mut union_find = SparseUnionFind::default();
    let mut pairs = 0u64;
    for f in 0..FILES {
        read_pairs(&dir.join(format!("pairs-{f:04}.bin")), |g| {
            pairs += g.iter().filter(|(_, t)| t.is_some()).count() as u64;
            union_find.replay(g);
        })?;
    }
    let docs = union_find.len();
    let members = union_find.members();
    let seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let million = pairs as f64 / 1e6;
    println!(
        "components: {pairs} pairs, {docs} documents in clusters, {} member rows; {seconds:.2} s ({:.2} s per million pairs), peak RSS {:.0} MiB ({:.0} MiB per million pairs)",
        members.len(),
        seconds / million,
        peak_kib / 1024.0,
        peak_kib / 1024.0 / million
    );
    Ok(())
}
