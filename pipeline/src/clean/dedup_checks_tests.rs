//! The `ship` and `check` stages against the one-process rule on made-up groups: the edges
//! of every task together are those `resolve_group` joins, with groups past the checked
//! window, documents of several tasks in a group, inputs without kept documents, and the
//! same group found by several pairs tasks.

use std::collections::BTreeSet;

use super::*;
use crate::dedup::partition::{resolve_group, write_signatures};
use crate::test_rng::TestRng;

const TASKS: usize = 3;

fn config(out: &std::path::Path) -> PipelineConfig {
    let text = format!(
        "[input]\npaths = [\"unused\"]\n[output]\ndir = \"{}\"\n[dedup.minhash]\nenabled = true\nmin_similarity = 0.6\n",
        out.display()
    );
    toml::from_str(&text).expect("config")
}

/// Signatures in families: a document shares most hashes with its family's base, so
/// documents of one family are similar, documents of two are not.
fn signatures(rng: &mut TestRng, docs: usize, width: usize) -> Vec<Vec<u16>> {
    let bases: Vec<Vec<u16>> = (0..7)
        .map(|_| (0..width).map(|_| rng.next_u64() as u16).collect())
        .collect();
    (0..docs)
        .map(|_| {
            let base = &bases[rng.below(bases.len())];
            let changed = rng.below(width * 3 / 4);
            let mut s = base.clone();
            for _ in 0..changed {
                let at = rng.below(width);
                s[at] = rng.next_u64() as u16;
            }
            s
        })
        .collect()
}

#[test]
fn ship_and_check_join_what_the_one_process_rule_joins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let width = config.dedup.minhash.bands * config.dedup.minhash.rows;
    let numbering = Numbering::from_kept(vec![170, 0, 90, 260, 45, 0, 120]);
    let docs: u64 = numbering.kept.iter().sum();
    let mut rng = TestRng::new(0x005E_ED0F_C4EC);
    let mut sigs = signatures(&mut rng, docs as usize, width);
    // Groups of 2 to 6 documents, two of 300 and 400 (past the 256 checked), each found by
    // one pairs task, some by two (another band).
    let mut groups: Vec<Vec<Triple>> = Vec::new();
    for g in 0..120u64 {
        let size = match g {
            0 => 300,
            1 => 400,
            _ => 2 + rng.below(5),
        };
        let mut members = BTreeSet::new();
        while members.len() < size {
            members.insert(rng.next_u64() % docs);
        }
        groups.push(members.iter().map(|&d| (g as u32, g, d)).collect());
    }
    // The big group's last 100 members are alike and like nothing before them: past the
    // checked window, they join nothing in it.
    let alike: Vec<u16> = (0..width).map(|_| rng.next_u64() as u16).collect();
    for t in &groups[1][300..] {
        sigs[t.2 as usize] = alike.clone();
    }
    for (input, (&first, &kept)) in numbering.first_doc.iter().zip(&numbering.kept).enumerate() {
        let path = dedup_dir(&config).join(format!("sigs-{input:05}.bin"));
        let mine = &sigs[first as usize..(first + kept) as usize];
        write_signatures(&path, width, mine).expect("sigs");
    }
    let mut writers: Vec<GroupsWriter> = (0..TASKS)
        .map(|_| GroupsWriter::new(&numbering, TASKS))
        .collect();
    for (g, group) in groups.iter().enumerate() {
        writers[g % TASKS].add(group);
        if g % 5 == 0 {
            writers[(g + 1) % TASKS].add(group);
        }
    }
    let slice = |t| TaskSlice::new(t, TASKS).expect("slice");
    assert_eq!(
        groups_writers(&config, TASKS).expect("writers").len(),
        TASKS
    );
    for (t, writer) in writers.into_iter().enumerate() {
        writer.finish(&config, slice(t)).expect("groups file");
    }
    for t in 0..TASKS {
        let sections = read_groups(&config, slice(t)).expect("groups");
        ship(&config, slice(t), &sections).expect("ship");
    }
    let mut edges = BTreeSet::new();
    for t in 0..TASKS {
        let groups = forwarded_groups(&config, slice(t)).expect("groups");
        check(&config, slice(t), &groups).expect("check");
        read_edges(&config, slice(t), |g| {
            edges.extend(g.iter().map(|&(d, m)| (d, m.expect("a target"))));
            Ok(())
        })
        .expect("edges");
    }
    let threshold = config.dedup.minhash.min_similarity;
    let similar =
        |a: u64, b: u64| estimated_similarity(&sigs[a as usize], &sigs[b as usize]) >= threshold;
    let expected: BTreeSet<(u64, u64)> = groups
        .iter()
        .flat_map(|g| resolve_group(g, similar))
        .map(|(d, m)| (d, m.expect("a target")))
        .collect();
    let differ: Vec<_> = edges.symmetric_difference(&expected).collect();
    assert!(differ.is_empty(), "edges that differ: {differ:?}");
    // Not a vacuous case: joins past the window, and across tasks.
    let owner = |d: u64| (numbering.first_doc.partition_point(|&f| f <= d) - 1) % TASKS;
    let big: BTreeSet<u64> = groups[1][GROUP_CHECKS..].iter().map(|t| t.2).collect();
    assert!(edges.iter().any(|(d, _)| big.contains(d)), "{edges:?}");
    assert!(edges.iter().any(|&(d, m)| owner(d) != owner(m)));
    assert!(edges.len() > 200, "{} edges", edges.len());
}
