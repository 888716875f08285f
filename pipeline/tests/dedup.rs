//! Deduplication: planted exact and near duplicates are found; survivors do not depend on
//! the thread count; runs spill to disk.

use std::path::Path;

use pipeline::dedup::{
    Clusters, MinHashOptions, MinHasher, RunWriter, estimated_similarity, exact_key,
};

use crate::helpers::{good_chinese, good_english};

#[test]
fn exact_key_ignores_case_and_whitespace_only() {
    assert_eq!(exact_key("Hello  World\n"), exact_key("hello world"));
    assert_ne!(exact_key("hello world"), exact_key("hello world!"));
}

#[test]
fn near_duplicates_share_a_band_and_different_texts_do_not() {
    let hasher = MinHasher::new(MinHashOptions::default());
    let a = good_english(1);
    // One word changed in a long text: near duplicate.
    let b = a.replacen("The ", "One ", 1);
    let c = good_english(2);
    let (ka, kb, kc) = (
        hasher.band_keys(&a, false).expect("a"),
        hasher.band_keys(&b, false).expect("b"),
        hasher.band_keys(&c, false).expect("c"),
    );
    assert_eq!(ka.len(), 14);
    assert!(
        ka.iter().zip(&kb).any(|(x, y)| x == y),
        "near duplicates must collide in a band"
    );
    assert!(
        ka.iter().zip(&kc).all(|(x, y)| x != y),
        "different texts must not collide"
    );
    // Chinese: character shingles.
    let z1 = good_chinese(1);
    let z2 = z1.replacen("的", "之", 1);
    let (k1, k2) = (
        hasher.band_keys(&z1, true).expect("z1"),
        hasher.band_keys(&z2, true).expect("z2"),
    );
    assert!(k1.iter().zip(&k2).any(|(x, y)| x == y));
}

fn clusters(keys: &[Vec<u64>], dir: &Path, run_entries: usize) -> Vec<(u64, bool, u64)> {
    let mut writer = RunWriter::new(dir, run_entries).expect("runs");
    for (doc, bands) in keys.iter().enumerate() {
        for (band, key) in bands.iter().enumerate() {
            writer.push(band as u32, *key, doc as u64).expect("push");
        }
    }
    let spilled = writer.runs();
    let mut c = Clusters::build(writer, keys.len()).expect("build");
    let out: Vec<_> = (0..keys.len() as u64).map(|d| c.of(d)).collect();
    if run_entries < 50 {
        assert!(spilled > 1, "small run buffers must spill several runs");
    }
    out
}

#[test]
fn clusters_keep_the_first_document_and_survive_spilling() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hasher = MinHasher::new(MinHashOptions::default());
    let mut texts: Vec<String> = (0..6).map(good_english).collect();
    texts.push(texts[1].replacen("The ", "One ", 1)); // 6 ~ 1
    texts.push(texts[4].replacen("The ", "A ", 1)); // 7 ~ 4
    texts.push(texts[1].clone()); // 8 == 1
    let keys: Vec<Vec<u64>> = texts
        .iter()
        .map(|t| hasher.band_keys(t, false).expect("keys"))
        .collect();
    let in_memory = clusters(&keys, &tmp.path().join("a"), 1 << 20);
    let spilled = clusters(&keys, &tmp.path().join("b"), 7);
    assert_eq!(in_memory, spilled);
    assert_eq!(in_memory[6], (1, true, 3));
    assert_eq!(in_memory[8], (1, true, 3));
    assert_eq!(in_memory[1], (1, false, 3));
    assert_eq!(in_memory[7], (4, true, 2));
    assert_eq!(in_memory[0], (0, false, 1));
}

/// Sharing a band is only a candidate: with a check, a document joins the first earlier member
/// of the band's group it is similar to, and a chance collision joins nothing.
#[test]
fn checked_clusters_join_only_similar_candidates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut writer = RunWriter::new(tmp.path(), 1 << 10).expect("runs");
    // Four documents share one band key; only 0 ~ 2 and 1 ~ 3 are similar.
    for doc in 0..4u64 {
        writer.push(0, 42, doc).expect("push");
    }
    let similar = |a: u64, b: u64| (a % 2) == (b % 2);
    let mut c = Clusters::build_checked(writer, 4, similar).expect("build");
    assert_eq!(c.of(0), (0, false, 2));
    assert_eq!(c.of(1), (1, false, 2));
    assert_eq!(c.of(2), (0, true, 2));
    assert_eq!(c.of(3), (1, true, 2));
}

#[test]
fn signature_agreement_estimates_jaccard_similarity() {
    let hasher = MinHasher::new(MinHashOptions::default());
    let a = good_english(1);
    let words: Vec<&str> = a.split_whitespace().collect();
    // Every 20th word replaced: about 1 word-5-gram in 4 changes, Jaccard about 0.6.
    let b: Vec<String> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i % 20 == 0 {
                format!("x{i}")
            } else {
                (*w).to_string()
            }
        })
        .collect();
    let b = b.join(" ");
    let (sa, sb, sc) = (
        hasher.sketch(&a, false).expect("a"),
        hasher.sketch(&b, false).expect("b"),
        hasher.sketch(&good_english(2), false).expect("c"),
    );
    assert_eq!(sa.signature.len(), 14 * 8);
    let shingles = |t: &str| -> std::collections::HashSet<Vec<String>> {
        let w: Vec<String> = t
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        w.windows(5).map(<[String]>::to_vec).collect()
    };
    let (x, y) = (shingles(&a), shingles(&b));
    let truth = x.intersection(&y).count() as f64 / x.union(&y).count() as f64;
    let estimate = estimated_similarity(&sa.signature, &sb.signature);
    assert!(
        (estimate - truth).abs() < 0.15,
        "estimate {estimate:.2}, true Jaccard {truth:.2}"
    );
    assert_eq!(estimated_similarity(&sa.signature, &sa.signature), 1.0);
    assert!(estimated_similarity(&sa.signature, &sc.signature) < 0.1);
}

/// The split run's replay (groups resolved per partition, then replayed through the sparse
/// union-find) gives the clusters `build_checked` gives, on groups larger than the checked
/// window and clusters chained across bands, where the order of the unions matters.
#[test]
fn the_split_replay_gives_the_one_process_clusters() {
    use pipeline::dedup::partition::{SparseUnionFind, groups, resolve_group};
    let docs = 3_000u64;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut triples = Vec::new();
    for doc in 0..docs {
        // Band 0: 8 keys (groups of ~375, past the 256-member window); bands 1-3: 40 keys.
        triples.push((0u32, next() % 8, doc));
        for band in 1..4u32 {
            triples.push((band, next() % 40, doc));
        }
    }
    // A fixed, order-free "similarity": one pair in 300, so clusters stay apart and a
    // document is often already joined to a group member it is not similar to.
    let similar = |a: u64, b: u64| {
        let (lo, hi) = (a.min(b), a.max(b));
        xxhash_rust::xxh3::xxh3_64(&[lo.to_le_bytes(), hi.to_le_bytes()].concat())
            .is_multiple_of(300)
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut writer = RunWriter::new(tmp.path(), 1_000).expect("runs");
    for &(band, key, doc) in &triples {
        writer.push(band, key, doc).expect("push");
    }
    let mut one = Clusters::build_checked(writer, docs as usize, similar).expect("build");
    triples.sort_unstable();
    let mut split = SparseUnionFind::default();
    for group in groups(&triples) {
        split.replay(&resolve_group(group, similar));
    }
    let members: std::collections::HashMap<u64, (u64, u64)> = split
        .members()
        .into_iter()
        .map(|(doc, root, size)| (doc, (root, size)))
        .collect();
    let mut sparse = Clusters::from_members(members);
    let mut duplicates = 0;
    for doc in 0..docs {
        let expected = one.of(doc);
        duplicates += u64::from(expected.1);
        assert_eq!(sparse.of(doc), expected, "document {doc}");
    }
    assert!(duplicates > 100, "{duplicates} duplicates");
}

/// Stage 3 copies the surviving kept lines without parsing them: a kept work file changed
/// after the clean stage wrote it (here one letter of a text, still valid JSON) is refused
/// by its digest, naming the file, and nothing is written for it; a clean rerun mends it.
#[test]
fn a_kept_work_file_changed_after_the_clean_stage_is_refused_by_survivors() {
    use pipeline::clean::{Stage, run_stage, stages_of};
    use pipeline::shard::TaskSlice;

    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = crate::cluster_dedup::dedup_corpus(dir.path(), 20);
    let out = dir.path().join("out");
    let config = crate::cluster_dedup::dedup_config(dir.path(), &inputs, &out);
    let task = Some(TaskSlice::new(0, 1).expect("slice"));
    let stages = stages_of(&config);
    for &stage in &stages[..stages.len() - 1] {
        run_stage(&config, stage, task, false).expect("stage");
    }
    let kept = out.join("work/input-00000.kept.jsonl");
    let original = std::fs::read_to_string(&kept).expect("kept work file");
    let at = original.find("\"text\":\"").expect("a text") + 8;
    let mut changed = original.clone().into_bytes();
    changed[at] = if changed[at] == b'x' { b'y' } else { b'x' };
    std::fs::write(&kept, &changed).expect("write");
    let err = run_stage(&config, Stage::Survivors, task, false).expect_err("corrupt");
    let err = format!("{err:#}");
    assert!(
        err.contains("input-00000.kept.jsonl is not what the clean stage wrote"),
        "{err}"
    );
    assert!(!out.join("tasks/survivors-00000-of-00001.json").exists());
    // Put back, the same stage succeeds.
    std::fs::write(&kept, original).expect("write");
    run_stage(&config, Stage::Survivors, task, false).expect("survivors");
}

/// The check stages exist only with similarity checks: asked for without them, a task says
/// which stages the config has.
#[test]
fn a_check_stage_without_similarity_checks_names_the_configs_stages() {
    use pipeline::clean::{Stage, run_stage};
    use pipeline::shard::TaskSlice;

    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = vec![dir.path().join("a.jsonl").display().to_string()];
    let mut config =
        crate::cluster_dedup::dedup_config(dir.path(), &inputs, &dir.path().join("out"));
    config.dedup.minhash.min_similarity = 0.0;
    let task = Some(TaskSlice::new(0, 2).expect("slice"));
    let err = run_stage(&config, Stage::Ship, task, false).expect_err("no ship stage");
    let err = format!("{err:#}");
    assert!(
        err.contains("--stage ship: not a stage of this config (its stages: clean, pairs, components, survivors;"),
        "{err}"
    );
}

/// A marker of a build whose work files had another layout (or of one that did not record
/// it) is refused by the stage that would read those files, naming the marker.
#[test]
fn a_marker_of_a_build_with_another_work_file_layout_is_refused_by_name() {
    use pipeline::clean::{Stage, run_stage};
    use pipeline::shard::TaskSlice;

    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = crate::cluster_dedup::dedup_corpus(dir.path(), 20);
    let out = dir.path().join("split");
    let config = crate::cluster_dedup::dedup_config(dir.path(), &inputs, &out);
    let task = |i| Some(TaskSlice::new(i, 3).expect("slice"));
    for i in 0..3 {
        run_stage(&config, Stage::Clean, task(i), false).expect("clean");
    }
    let clean_1 = out.join("tasks/clean-00001-of-00003.json");
    let original = std::fs::read(&clean_1).expect("clean marker");
    for (format, shown) in [(Some(2), "format 2"), (None, "an earlier build's")] {
        let mut marker: serde_json::Value = serde_json::from_slice(&original).expect("json");
        let fields = marker.as_object_mut().expect("object");
        match format {
            Some(f) => fields.insert("work_format".into(), f.into()),
            None => fields.remove("work_format"),
        };
        std::fs::write(&clean_1, serde_json::to_vec(&marker).expect("json")).expect("write");
        let err = run_stage(&config, Stage::Pairs, task(1), false).expect_err("old layout");
        let err = format!("{err:#}");
        assert!(
            err.contains("clean-00001-of-00003.json")
                && err.contains(&format!("another layout ({shown}")),
            "{err}"
        );
    }
    // The marker as this build wrote it is taken.
    std::fs::write(&clean_1, &original).expect("restore");
    run_stage(&config, Stage::Pairs, task(1), false).expect("pairs");
}
