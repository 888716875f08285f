//! GRPO on a toy task from the demo's towns, from an SFT model: prompts from JSONL files with
//! each prompt's reference (the asked town's river) and a `reference` rule, the mean reward
//! on held-out prompts measured against the SFT model's level; several updates per
//! generation (the ratio leaves 1 and the clip bites); bad prompt files named by line; the
//! reward model alone as the reward.

use std::path::{Path, PathBuf};

use crate::chat_data::{base_checkpoint, exchange, post_config_toml, sft_dataset, write_config};
use crate::helpers::{metrics, trainer_err, trainer_ok};

/// Four (town, river) pairs of the demo, with different rivers, from the references of
/// `data/demo/prompts.jsonl` ("X lies on the Y River, below Z Mountain.").
fn demo_towns() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/demo/prompts.jsonl");
    let text = std::fs::read_to_string(&path).expect("demo prompts");
    let mut towns: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let reference = row["meta"]["reference"].as_str().unwrap_or_default();
        let Some((town, rest)) = reference.split_once(" lies on the ") else {
            continue;
        };
        let Some((river, _)) = rest.split_once(" River") else {
            continue;
        };
        if towns.iter().all(|(_, r)| r != river) {
            towns.push((town.to_string(), river.to_string()));
        }
    }
    assert!(towns.len() >= 4, "the demo has four rivers: {towns:?}");
    towns.truncate(4);
    towns
}

/// A prompt file: one `{"id", "prompt", "meta": {"reference"}}` line per (question, river).
fn prompt_file(root: &Path, name: &str, rows: &[(String, String)]) -> PathBuf {
    let path = root.join(format!("{name}.jsonl"));
    let lines: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, (q, r))| {
            serde_json::json!({"id": format!("{name}-{i}"), "prompt": q, "meta": {"reference": r}})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").expect("write prompts");
    path
}

fn where_is(towns: &[(String, String)]) -> Vec<(String, String)> {
    towns
        .iter()
        .map(|(t, r)| (format!("Where is {t}?"), r.clone()))
        .collect()
}

fn which_river(towns: &[(String, String)]) -> Vec<(String, String)> {
    towns
        .iter()
        .map(|(t, r)| (format!("Which river is {t} on?"), r.clone()))
        .collect()
}

fn field_at(lines: &[serde_json::Value], kind: &str, step: u64, field: &str) -> f64 {
    lines
        .iter()
        .find(|l| l["kind"] == kind && l["step"] == step)
        .and_then(|l| l[field].as_f64())
        .unwrap_or_else(|| panic!("no {field} in a {kind} line at step {step}"))
}

const REFERENCE_RULE: &str = "[[grpo.rules]]\nkind = \"reference\"\n";

/// Towns for the toy task: the demo's six river towns (`data/demo/prompts.jsonl`, four
/// rivers) and generated ones on the same rivers, `n` in all.
fn toy_towns(n: usize) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/demo/prompts.jsonl");
    let text = std::fs::read_to_string(&path).expect("demo prompts");
    let mut towns: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        let reference = row["meta"]["reference"].as_str().unwrap_or_default();
        if let Some((town, rest)) = reference.split_once(" lies on the ")
            && let Some((river, _)) = rest.split_once(" River")
        {
            towns.push((town.to_string(), river.to_string()));
        }
    }
    let mut rivers: Vec<String> = towns.iter().map(|(_, r)| r.clone()).collect();
    rivers.sort();
    rivers.dedup();
    assert_eq!(
        (towns.len(), rivers.len()),
        (6, 4),
        "the demo's river towns: {towns:?}"
    );
    // Each generated name starts differently: the task is the habit, not telling apart
    // near-identical names (with "Alby" and "Alford" on different rivers the SFT model
    // mixes them up and starts at 0.17-0.46).
    let heads = [
        "Al", "Bren", "Cor", "Dun", "Eld", "Fen", "Gar", "Hol", "Ivor", "Jas",
    ];
    let tails = ["by", "ford", "wick", "ton"];
    for k in 0..n.saturating_sub(towns.len()) {
        let name = format!("{}{}", heads[k % heads.len()], tails[k % tails.len()]);
        towns.push((name, rivers[k % rivers.len()].clone()));
    }
    towns.truncate(n);
    towns
}

/// A seed's toy run: SFT then GRPO; the held-out mean reward at step 0 (the SFT model) and
/// at the end, and the training reward of the first and last five steps.
struct ToyRun {
    seed: u64,
    held_out: (f64, f64),
    train: (f64, f64),
    max_kl: f64,
}

/// SFT (seeded with `seed`) on every town's two questions, then LoRA GRPO (same seed) on
/// `train`, evaluated on `held_out` before the first step and after the last.
fn toy_run(
    root: &Path,
    base: &Path,
    sft_data: &Path,
    (train, held_out): (&Path, &Path),
    seed: u64,
) -> ToyRun {
    let sft_out = root.join(format!("sft-{seed}"));
    let sft_steps = 400;
    let sft_config = post_config_toml(base, sft_data, &sft_out, sft_steps, "")
        .replace("lr = 0.003", "lr = 0.01")
        .replace("seed = 3", &format!("seed = {seed}"));
    trainer_ok(&["sft", "--config", &write_config(root, "sft", &sft_config)]);
    let sft = sft_out.join(format!("checkpoints/step-{sft_steps:08}"));
    let out = root.join(format!("grpo-{seed}"));
    let extra = format!(
        "[lora]\nrank = 4\nalpha = 8.0\n\n[eval]\nat_start = true\n\n[grpo]\ngroup_size = 8\nmax_new_tokens = 8\nbeta = 0.04\ntemperature = 1.0\n\n{REFERENCE_RULE}"
    );
    let steps = 30;
    // 8 prompts per step (4 per micro-batch, 2 micro-batches), 8 answers each.
    let toml = post_config_toml(&sft, train, &out, steps, &extra)
        .replace(
            "seq_len = 64",
            &format!("valid = \"{}\"\nseq_len = 64", held_out.display()),
        )
        .replace("lr = 0.003", "lr = 0.01")
        .replace("seed = 3", &format!("seed = {seed}"))
        .replace("micro_batch_size = 2", "micro_batch_size = 4");
    trainer_ok(&["grpo", "--config", &write_config(root, "grpo", &toml)]);
    let lines = metrics(&out);
    let train_mean = |from: u64| {
        (from..from + 5)
            .map(|s| field_at(&lines, "train", s, "reward"))
            .sum::<f64>()
            / 5.0
    };
    ToyRun {
        seed,
        held_out: (
            field_at(&lines, "eval", 0, "val_reward"),
            field_at(&lines, "eval", steps, "val_reward"),
        ),
        train: (train_mean(1), train_mean(steps - 4)),
        max_kl: (1..=steps)
            .map(|s| field_at(&lines, "train", s, "kl"))
            .fold(0.0, f64::max),
    }
}

/// The toy task: 16 towns on four rivers. The SFT demonstrations answer each question
/// ("Where is T?", "Which river is T on?") with the town's river twice and "Not sure." once,
/// a habit the SFT model keeps (about a third of its answers miss the river). GRPO with a
/// `reference` rule (the answer contains the town's river) on "Where is T?" must raise the
/// mean reward on the held-out phrasing "Which river is T on?" (8 answers sampled per
/// prompt with fixed seeds, the same evaluation at step 0 and at the end), in every seed.
#[test]
fn grpo_raises_the_held_out_reward_of_an_sft_model_on_the_towns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 40);
    let towns = toy_towns(16);
    let mut conversations = Vec::new();
    for (t, r) in &towns {
        for q in [format!("Where is {t}?"), format!("Which river is {t} on?")] {
            conversations.push(exchange(&q, &format!("{r}.")));
            conversations.push(exchange(&q, &format!("{r}.")));
            conversations.push(exchange(&q, "Not sure."));
        }
    }
    let sft_data = sft_dataset(tmp.path(), "sft", &conversations);
    let train = prompt_file(tmp.path(), "train", &where_is(&towns));
    let held_out = prompt_file(tmp.path(), "held-out", &which_river(&towns));
    let seeds: Vec<u64> = std::env::var("JIELONG_TOY_SEEDS")
        .unwrap_or_else(|_| "3,4,5".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("JIELONG_TOY_SEEDS: comma-separated seeds")
        })
        .collect();
    let started = std::time::Instant::now();
    let runs: Vec<ToyRun> = seeds
        .iter()
        .map(|&seed| toy_run(tmp.path(), &base, &sft_data, (&train, &held_out), seed))
        .collect();
    for r in &runs {
        eprintln!(
            "grpo towns, seed {}: held-out mean reward {:.3} -> {:.3}; training reward {:.3} (steps 1-5) -> {:.3} (last five); max kl {:.3}",
            r.seed, r.held_out.0, r.held_out.1, r.train.0, r.train.1, r.max_kl
        );
    }
    let n = runs.len() as f64;
    let mean = |f: &dyn Fn(&ToyRun) -> f64| runs.iter().map(f).sum::<f64>() / n;
    let (before, after) = (mean(&|r| r.held_out.0), mean(&|r| r.held_out.1));
    eprintln!(
        "grpo towns, {} seeds: held-out {before:.3} -> {after:.3}; {:.1} s",
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    // Measured over 15 seeds (3-5, 11-13, 21-23, 31-33, 41-43), 30 steps, see the README:
    // the margins below sit well under the smallest gains seen.
    for r in &runs {
        assert!(
            r.held_out.0 < 0.85,
            "seed {}: the SFT model leaves room: {:?}",
            r.seed,
            r.held_out
        );
        assert!(
            r.train.1 >= r.train.0 + 0.03,
            "seed {}: training reward {:?}",
            r.seed,
            r.train
        );
        assert!(
            r.held_out.1 >= r.held_out.0 - 0.1,
            "seed {}: held-out reward fell: {:?}",
            r.seed,
            r.held_out
        );
    }
    // One seed in 15 (13, whose SFT model starts at 0.81) did not gain held out: it lost
    // the habit ("Not sure." 18 -> 2 of 128 answers) but misspelt Reed as "Red." (0 -> 24).
    let gained = runs
        .iter()
        .filter(|r| r.held_out.1 >= r.held_out.0 + 0.1)
        .count();
    assert!(
        gained + 1 >= runs.len(),
        "held-out reward up by 0.1 in {gained} of {} seeds",
        runs.len()
    );
    assert!(
        after >= before + 0.1,
        "mean held-out reward {before} -> {after}"
    );
}

#[test]
fn several_updates_per_generation_reuse_the_answers_and_clip_the_ratio() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 3);
    let train = prompt_file(tmp.path(), "train", &where_is(&demo_towns()));
    let out = tmp.path().join("grpo");
    let extra = format!(
        "[grpo]\ngroup_size = 4\nmax_new_tokens = 8\nbeta = 0.0\nepsilon = 0.05\nupdates_per_generation = 3\n\n{REFERENCE_RULE}[[grpo.rules]]\nkind = \"contains\"\npattern = \"e\"\n"
    );
    let toml = post_config_toml(&base, &train, &out, 6, &extra)
        .replace("lr = 0.003", "lr = 0.01")
        .replace("warmup_steps = 2", "warmup_steps = 0");
    trainer_ok(&["grpo", "--config", &write_config(tmp.path(), "grpo", &toml)]);
    let lines = metrics(&out);
    let clip: Vec<f64> = (1..=6)
        .map(|s| field_at(&lines, "train", s, "clip_fraction"))
        .collect();
    let reward: Vec<f64> = (1..=6)
        .map(|s| field_at(&lines, "train", s, "reward"))
        .collect();
    eprintln!("updates_per_generation = 3: clip fraction {clip:?}, reward {reward:?}");
    // A generation's first update runs at ratio 1; its later ones on the same answers.
    assert_eq!((clip[0], clip[3]), (0.0, 0.0), "{clip:?}");
    assert_eq!((reward[0], reward[0]), (reward[1], reward[2]), "{reward:?}");
    assert_eq!((reward[3], reward[3]), (reward[4], reward[5]), "{reward:?}");
    assert!(
        [clip[1], clip[2], clip[4], clip[5]]
            .iter()
            .any(|&c| c > 0.0),
        "the ratio left [1 - eps, 1 + eps] on a reused generation: {clip:?}"
    );
}

#[test]
fn grpo_scores_with_the_reward_model_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 3);
    let towns = demo_towns();
    let pairs: Vec<_> = towns
        .iter()
        .map(|(t, r)| {
            (
                format!("Where is {t}?"),
                format!("on the {r} River."),
                "no.".to_string(),
            )
        })
        .collect();
    let prefs = crate::chat_data::preference_dataset(tmp.path(), "prefs", &pairs);
    let rm_out = tmp.path().join("rm");
    let rm_config = post_config_toml(&base, &prefs, &rm_out, 4, "");
    trainer_ok(&[
        "reward",
        "--config",
        &write_config(tmp.path(), "rm", &rm_config),
    ]);
    let rm = rm_out.join("checkpoints/step-00000004");
    let train = prompt_file(tmp.path(), "train", &where_is(&towns));
    let out = tmp.path().join("grpo");
    let extra = format!(
        "[eval]\nevery = 2\n\n[grpo]\ngroup_size = 3\nmax_new_tokens = 8\nreward_model = \"{}\"\n",
        rm.display()
    );
    let toml = post_config_toml(&base, &train, &out, 2, &extra).replace(
        "seq_len = 64",
        &format!("valid = \"{}\"\nseq_len = 64", train.display()),
    );
    trainer_ok(&["grpo", "--config", &write_config(tmp.path(), "grpo", &toml)]);
    let lines = metrics(&out);
    let (reward, spread) = (
        field_at(&lines, "train", 1, "reward"),
        field_at(&lines, "train", 1, "reward_spread"),
    );
    let val = field_at(&lines, "eval", 2, "val_reward");
    eprintln!("reward model alone: reward {reward:.4}, spread {spread:.4}, val_reward {val:.4}");
    // The reward model's scores differ between answers: a group has something to learn.
    assert!(reward.is_finite() && val.is_finite(), "{reward} {val}");
    assert!(spread > 0.0, "the reward model scores every answer alike");
}

#[test]
fn bad_prompt_sources_are_named_by_file_and_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 1);
    let out = tmp.path().join("out");
    let grpo = format!("[grpo]\n{REFERENCE_RULE}");
    let bad_json = tmp.path().join("bad-json.jsonl");
    std::fs::write(
        &bad_json,
        "{\"prompt\": \"Where is Ashnea?\"}\n{\"prompt\": \n{\"question\": \"x\"}\n",
    )
    .expect("write");
    let bad_reference = tmp.path().join("bad-reference.jsonl");
    std::fs::write(
        &bad_reference,
        "{\"prompt\": \"a\"}\n\n{\"prompt\": \"b\", \"meta\": {\"reference\": 3}}\n",
    )
    .expect("write");
    let shown = |p: &Path| p.display().to_string();
    for (source, expected) in [
        (
            shown(&bad_json),
            vec![
                format!("2 bad line(s) in {}", shown(&bad_json)),
                format!("{}:2: not a prompt line", shown(&bad_json)),
                format!("{}:3: not a prompt line", shown(&bad_json)),
            ],
        ),
        (
            shown(&bad_reference),
            vec![format!(
                "{}:3: meta.reference must be non-empty text, not 3",
                shown(&bad_reference)
            )],
        ),
        (
            "http://127.0.0.1:9/projects/seven".to_string(),
            vec!["\"seven\" is not a project id".to_string()],
        ),
    ] {
        let toml = post_config_toml(&base, Path::new(&source), &out, 1, &grpo);
        let err = trainer_err(&["grpo", "--config", &write_config(tmp.path(), "bad", &toml)]);
        for e in expected {
            assert!(err.contains(&e), "{source}: wanted {e:?} in {err}");
        }
    }
    let toml = post_config_toml(
        &base,
        Path::new(&shown(&bad_reference)),
        &out,
        1,
        "[grpo]\n[[grpo.rules]]\nkind = \"reference\"\npattern = \"x\"\n",
    );
    let err = trainer_err(&["grpo", "--config", &write_config(tmp.path(), "bad", &toml)]);
    assert!(
        err.contains("grpo.rules[0]: a reference rule takes no pattern"),
        "{err}"
    );
}
