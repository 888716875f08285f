//! Data parallelism end to end, on the CPU with Gloo (one thread per rank): two ranks of
//! micro-batch 4 train as one rank of micro-batch 8 (pretrain, LoRA SFT, full DPO, reward
//! model, LoRA KTO with its KL estimate over both ranks, LoRA GRPO), ZeRO-1 gives the run without it, a run
//! killed with one world size resumes with another on the same loss curve, ranks started
//! with different configs are refused, and torchrun launches the job as setting the
//! environment by hand does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use tch::Tensor;
use trainer::io::checkpoint::{Checkpoint, read_safetensors};
use trainer::io::optim_shards;

use crate::chat_data::{
    INSTRUCTIONS, base_checkpoint, exchange, post_config_toml, preference_dataset, sft_dataset,
    unpaired_dataset, write_config,
};
use crate::dist::free_port;
use crate::helpers::{TRAINER, datasets, loss_at, metrics, tiny_config_toml};

const STEPS: u64 = 20;
/// Relative tolerance between a 2-rank and a 1-rank run (summation order differs).
const TOLERANCE: f64 = 1e-5;
/// The final weights must agree within [`TOLERANCE`] relative in norm (`|a - b| / |a|` per
/// tensor), and each element within this of the tensor's largest value. AdamW divides by the
/// root of the second moment, so where a gradient is near zero the all-reduce's rounding
/// moves one element's update by more than it moves the loss: with document-aligned windows
/// the tiny pretraining run's losses agree within 1.1e-7 at every step (the same windows)
/// while one element ends 1.2e-5 of its tensor's largest value apart.
const WEIGHT_TOLERANCE: f64 = 3e-5;

/// Starts `args(rank)` as each of `world` ranks with the environment torchrun would set,
/// and waits for all.
fn launch(world: usize, args: impl Fn(usize) -> Vec<String>) -> Vec<Output> {
    let port = free_port().to_string();
    let children: Vec<_> = (0..world)
        .map(|rank| {
            let (r, w) = (rank.to_string(), world.to_string());
            let args = args(rank);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            testkit::process::spawn(
                "trainer",
                &args,
                &[
                    ("RANK", &r),
                    ("LOCAL_RANK", &r),
                    ("WORLD_SIZE", &w),
                    ("MASTER_ADDR", "127.0.0.1"),
                    ("MASTER_PORT", &port),
                    ("OMP_NUM_THREADS", "1"),
                ],
            )
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("rank output"))
        .collect()
}

fn all_ok(outs: &[Output]) {
    for (rank, out) in outs.iter().enumerate() {
        assert!(
            out.status.success(),
            "rank {rank} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Runs `args` alone (no rank variables).
fn alone(list: &[&str]) -> Output {
    testkit::process::run("trainer", list, &[("OMP_NUM_THREADS", "1")])
}

/// Runs `command` with config `one` as a single process and with config `two` as 2 ranks.
fn train_as_one_rank_and_two(command: &str, one: &str, two: &str) {
    testkit::process::ok(alone(&[command, "--config", one]));
    all_ok(&launch(2, |_| args(&[command, "--config", two])));
}

/// 24 preference pairs over the instructions, each answer against its negation.
fn preference_pairs() -> Vec<(String, String, String)> {
    (0..24)
        .map(|i| {
            let (q, a) = INSTRUCTIONS[i % INSTRUCTIONS.len()];
            (format!("{q} ({i})"), a.to_string(), format!("not {a}"))
        })
        .collect()
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

/// Same losses at every step and same tensors in `file` of the last checkpoint.
fn assert_same_run(a: &Path, b: &Path, steps: u64, file: &str) {
    let (la, lb) = (metrics(a), metrics(b));
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for step in 1..=steps {
        let (x, y) = (loss_at(&la, step), loss_at(&lb, step));
        worst.0 = worst.0.max(relative(x, y));
        if std::env::var_os("JL_TEST_VERBOSE").is_some() {
            eprintln!("step {step}: {x} vs {y}, relative {:.1e}", relative(x, y));
        }
        assert!(
            relative(x, y) <= TOLERANCE,
            "loss at step {step}: {x} vs {y}"
        );
    }
    let ckpt = format!("checkpoints/step-{steps:08}");
    let read = |dir: &Path| -> BTreeMap<String, Tensor> {
        read_safetensors(&dir.join(&ckpt).join(file)).expect("weights")
    };
    let (wa, wb) = (read(a), read(b));
    assert_eq!(wa.len(), wb.len());
    for (name, x) in &wa {
        let y = &wb[name];
        let diff = f64::try_from((x - y).abs().max()).expect("diff");
        let scale = f64::try_from(x.abs().max()).expect("scale");
        let norm = |t: &Tensor| f64::try_from(t.norm()).expect("norm");
        let in_norm = norm(&(x - y)) / norm(x).max(1e-12);
        assert!(
            in_norm <= TOLERANCE,
            "{name}: relative difference {in_norm:.1e} in norm"
        );
        assert!(
            diff <= WEIGHT_TOLERANCE * scale.max(1e-12),
            "{name}: max difference {diff} for values up to {scale}"
        );
        worst.1 = worst.1.max(in_norm);
        worst.2 = worst.2.max(diff / scale.max(1e-12));
    }
    eprintln!(
        "{} vs {}: largest relative difference {:.1e} in the losses, {:.1e} in the weights' norm, {:.1e} in one element",
        a.display(),
        b.display(),
        worst.0,
        worst.1,
        worst.2
    );
}

/// A pretrain config with `micro` windows per micro-batch, one micro-batch per step.
fn pretrain_config(root: &Path, name: &str, micro: usize, every: u64) -> (String, PathBuf) {
    let out = root.join(name);
    let toml = tiny_config_toml(&root.join("train"), &root.join("valid"), &out, STEPS)
        .replace(
            "micro_batch_size = 4\ngrad_accum = 2",
            &format!("micro_batch_size = {micro}\ngrad_accum = 1"),
        )
        .replace("every = 20", &format!("every = {every}"));
    (write_config(root, name, &toml), out)
}

#[test]
fn pretrain_on_two_ranks_of_4_is_one_rank_of_8_and_resumes_across_world_sizes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let (one, one_out) = pretrain_config(tmp.path(), "one", 8, 10);
    let (two, two_out) = pretrain_config(tmp.path(), "two", 4, 10);
    train_as_one_rank_and_two("pretrain", &one, &two);
    assert_same_run(&one_out, &two_out, STEPS, "model.safetensors");

    // Killed at step 10 with 2 ranks, resumed with 1 (micro-batch 8: the same global batch).
    let (killed, killed_out) = pretrain_config(tmp.path(), "killed2", 4, 10);
    let outs = launch(2, |_| {
        args(&["pretrain", "--config", &killed, "--abort-after-step", "10"])
    });
    assert!(outs.iter().all(|o| !o.status.success()));
    let resumed = pretrain_config(tmp.path(), "killed2", 8, 10).0;
    testkit::process::ok(alone(&["pretrain", "--config", &resumed, "--resume"]));
    assert_same_run(&one_out, &killed_out, STEPS, "model.safetensors");

    // And the other way: killed alone, resumed with 2 ranks.
    let (killed, killed_out) = pretrain_config(tmp.path(), "killed1", 8, 10);
    let out = alone(&["pretrain", "--config", &killed, "--abort-after-step", "10"]);
    assert!(!out.status.success());
    let resumed = pretrain_config(tmp.path(), "killed1", 4, 10).0;
    all_ok(&launch(2, |_| {
        args(&["pretrain", "--config", &resumed, "--resume"])
    }));
    assert_same_run(&one_out, &killed_out, STEPS, "model.safetensors");
}

#[test]
fn zero_1_gives_the_run_without_it_and_its_shards_resume_with_another_world_size() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let with_zero = |name: &str, micro: usize| {
        let (config, out) = pretrain_config(tmp.path(), name, micro, 10);
        let toml = std::fs::read_to_string(&config)
            .expect("config")
            .replace("threads = 1", "threads = 1\nzero = 1");
        (write_config(tmp.path(), name, &toml), out)
    };
    let (plain, plain_out) = pretrain_config(tmp.path(), "plain", 4, 10);
    all_ok(&launch(2, |_| args(&["pretrain", "--config", &plain])));
    let (zero, zero_out) = with_zero("zero", 4);
    all_ok(&launch(2, |_| args(&["pretrain", "--config", &zero])));
    let (lp, lz) = (metrics(&plain_out), metrics(&zero_out));
    for step in 1..=STEPS {
        assert_eq!(
            loss_at(&lp, step).to_bits(),
            loss_at(&lz, step).to_bits(),
            "loss at step {step}"
        );
    }
    // The same weights; the moments as one file per rank and a manifest over them, which
    // read back merged are the unsharded run's tensors bit for bit.
    let at_20 = |out: &Path| out.join("checkpoints/step-00000020");
    let model = |out: &Path| std::fs::read(at_20(out).join("model.safetensors")).expect("model");
    assert!(
        model(&plain_out) == model(&zero_out),
        "model.safetensors differs with ZeRO-1"
    );
    let sharded = at_20(&zero_out);
    assert!(!sharded.join("optimizer.safetensors").exists());
    let plain = read_safetensors(&at_20(&plain_out).join("optimizer.safetensors")).expect("opt");
    let mut shard_sizes = Vec::new();
    for rank in 0..2 {
        let shard =
            read_safetensors(&sharded.join(optim_shards::shard_file(rank, 2))).expect("shard");
        shard_sizes.push(shard.len());
    }
    assert!(shard_sizes.iter().all(|&n| n > 0), "{shard_sizes:?}");
    let merged = Checkpoint::load(&sharded)
        .expect("ckpt")
        .optimizer_state()
        .expect("merged");
    assert_eq!(shard_sizes.iter().sum::<usize>(), plain.len());
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        plain.keys().collect::<Vec<_>>()
    );
    for (name, t) in &plain {
        assert!(t.equal(&merged[name]), "{name} differs with ZeRO-1");
    }
    // Killed at step 10 with 2 sharded ranks, resumed by 1 rank of 8 rows.
    let (killed, killed_out) = with_zero("killed", 4);
    let outs = launch(2, |_| {
        args(&["pretrain", "--config", &killed, "--abort-after-step", "10"])
    });
    assert!(outs.iter().all(|o| !o.status.success()));
    let resumed = pretrain_config(tmp.path(), "killed", 8, 10).0;
    testkit::process::ok(alone(&["pretrain", "--config", &resumed, "--resume"]));
    assert_same_run(&plain_out, &killed_out, STEPS, "model.safetensors");
    // And the other way: 1 unsharded rank of 8 rows killed at step 10, resumed by 2 sharded
    // ranks (each keeps the moments it owns of the one file).
    let (alone_cfg, alone_out) = pretrain_config(tmp.path(), "alone", 8, 10);
    let out = alone(&[
        "pretrain",
        "--config",
        &alone_cfg,
        "--abort-after-step",
        "10",
    ]);
    assert!(!out.status.success());
    let (resumed, _) = with_zero("alone", 4);
    all_ok(&launch(2, |_| {
        args(&["pretrain", "--config", &resumed, "--resume"])
    }));
    assert_same_run(&plain_out, &alone_out, STEPS, "model.safetensors");
}

#[test]
fn a_rank_killed_mid_run_stops_the_other_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let (config, _) = pretrain_config(tmp.path(), "run", 4, 10);
    let started = std::time::Instant::now();
    let outs = launch(2, |rank| {
        let mut a = args(&["pretrain", "--config", &config]);
        if rank == 1 {
            a.extend(args(&["--abort-after-step", "3"]));
        }
        a
    });
    assert!(outs.iter().all(|o| !o.status.success()));
    let err = String::from_utf8_lossy(&outs[0].stderr);
    if std::env::var_os("JL_TEST_VERBOSE").is_some() {
        eprintln!("rank 0:\n{err}");
    }
    assert!(err.contains("on rank 0 of 2: rank 1 stopped"), "{err}");
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
}

#[test]
fn ranks_started_with_different_configs_are_refused_naming_the_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let (a, _) = pretrain_config(tmp.path(), "a", 4, 10);
    let toml = std::fs::read_to_string(&a)
        .expect("config")
        .replace("seed = 7", "seed = 8");
    let b = write_config(tmp.path(), "b", &toml);
    let outs = launch(2, |rank| {
        args(&["pretrain", "--config", if rank == 0 { &a } else { &b }])
    });
    for (rank, out) in outs.iter().enumerate() {
        assert!(!out.status.success(), "rank {rank} should refuse");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("config.train.seed (differs from rank 0 on rank 1"),
            "rank {rank}: {err}"
        );
    }
}

#[test]
fn torchrun_launches_the_job_as_the_environment_set_by_hand_does() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let (one, one_out) = pretrain_config(tmp.path(), "one", 8, 10);
    testkit::process::ok(alone(&["pretrain", "--config", &one]));
    let (two, two_out) = pretrain_config(tmp.path(), "two", 4, 10);
    let torchrun = testkit::python::venv_python().with_file_name("torchrun");
    let out = std::process::Command::new(torchrun)
        .args([
            "--standalone",
            "--nproc-per-node",
            "2",
            "--no-python",
            TRAINER,
        ])
        .args(["pretrain", "--config", &two])
        .env("OMP_NUM_THREADS", "1")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run torchrun");
    assert!(
        out.status.success(),
        "torchrun failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_run(&one_out, &two_out, STEPS, "model.safetensors");
}

const LORA: &str = "
[lora]
rank = 4
alpha = 8.0
dropout = 0.0
targets = [\"q_proj\", \"v_proj\", \"down_proj\"]
";

/// A post-training config with `micro` rows per micro-batch, one micro-batch per step.
fn post_config(
    root: &Path,
    name: &str,
    base: &Path,
    data: &Path,
    micro: usize,
    extra: &str,
) -> (String, PathBuf) {
    let out = root.join(name);
    let toml = post_config_toml(base, data, &out, STEPS, extra)
        .replace(
            "micro_batch_size = 2\ngrad_accum = 2",
            &format!("micro_batch_size = {micro}\ngrad_accum = 1"),
        )
        .replace("every = 0", &format!("every = {STEPS}"));
    (write_config(root, name, &toml), out)
}

#[test]
fn lora_sft_on_two_ranks_of_4_is_one_rank_of_8() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 3);
    let conversations: Vec<_> = (0..24)
        .map(|i| {
            let (q, a) = INSTRUCTIONS[i % INSTRUCTIONS.len()];
            exchange(&format!("{q} ({i})"), a)
        })
        .collect();
    let data = sft_dataset(tmp.path(), "sft", &conversations);
    let (one, one_out) = post_config(tmp.path(), "one", &base, &data, 8, LORA);
    let (two, two_out) = post_config(tmp.path(), "two", &base, &data, 4, LORA);
    train_as_one_rank_and_two("sft", &one, &two);
    assert_same_run(&one_out, &two_out, STEPS, "adapter.safetensors");
}

#[test]
fn full_dpo_on_two_ranks_of_4_is_one_rank_of_8() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 20);
    let data = preference_dataset(tmp.path(), "prefs", &preference_pairs());
    let extra = |name: &str| {
        format!(
            "[dpo]\nbeta = 0.02\ncache_dir = \"{}\"\n",
            tmp.path().join(name).display()
        )
    };
    let (one, one_out) = post_config(tmp.path(), "one", &base, &data, 8, &extra("cache1"));
    let (two, two_out) = post_config(tmp.path(), "two", &base, &data, 4, &extra("cache2"));
    train_as_one_rank_and_two("dpo", &one, &two);
    assert_same_run(&one_out, &two_out, STEPS, "model.safetensors");
    // Rank 0 computed the job's reference log-probabilities once, into one cache file.
    let cached = std::fs::read_dir(tmp.path().join("cache2"))
        .expect("cache")
        .count();
    assert_eq!(cached, 1);
}

#[test]
fn a_reward_model_on_two_ranks_of_4_is_one_rank_of_8() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 3);
    let data = preference_dataset(tmp.path(), "prefs", &preference_pairs());
    // A gentler rate than the other tests: at 0.003 this model's loss jumps at step 6 and
    // amplifies rounding 100x, as much between 1 rank of 8 and 1 rank of 4 x 2 micro-batches
    // as between 1 rank and 2.
    let slow = |name: &str, micro: usize| {
        let (config, out) = post_config(tmp.path(), name, &base, &data, micro, "");
        let text = std::fs::read_to_string(&config)
            .expect("config")
            .replace("lr = 0.003", "lr = 0.001");
        (write_config(tmp.path(), name, &text), out)
    };
    let (one, one_out) = slow("one", 8);
    let (two, two_out) = slow("two", 4);
    train_as_one_rank_and_two("reward", &one, &two);
    assert_same_run(&one_out, &two_out, STEPS, "model.safetensors");
}

#[test]
fn lora_kto_on_two_ranks_of_4_is_one_rank_of_8() {
    // The KL reference point is the mean over the micro-batch's rows on both ranks, so the
    // two-rank job computes what one rank does.
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 20);
    let rows: Vec<_> = (0..24)
        .map(|i| {
            let (q, a) = INSTRUCTIONS[i % INSTRUCTIONS.len()];
            let answer = if i.is_multiple_of(3) {
                format!("not {a}")
            } else {
                a.to_string()
            };
            (format!("{q} ({i})"), answer, !i.is_multiple_of(3))
        })
        .collect();
    let data = unpaired_dataset(tmp.path(), "thumbs", &rows);
    let extra = |name: &str| {
        format!(
            "{LORA}\n[kto]\nbeta = 0.1\ncache_dir = \"{}\"\n",
            tmp.path().join(name).display()
        )
    };
    let (one, one_out) = post_config(tmp.path(), "one", &base, &data, 8, &extra("cache1"));
    let (two, two_out) = post_config(tmp.path(), "two", &base, &data, 4, &extra("cache2"));
    train_as_one_rank_and_two("kto", &one, &two);
    assert_same_run(&one_out, &two_out, STEPS, "adapter.safetensors");
    let kl = |out: &Path| {
        metrics(out)
            .iter()
            .rfind(|l| l["kind"] == "train")
            .and_then(|l| l["kl"].as_f64())
            .expect("kl")
    };
    assert!(relative(kl(&one_out), kl(&two_out)) <= TOLERANCE);
}

#[test]
fn lora_grpo_on_two_ranks_of_2_is_one_rank_of_4() {
    // Answers are seeded by each prompt's draw index, so both jobs sample the same ones.
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = base_checkpoint(tmp.path(), 20);
    let conversations: Vec<_> = (0..8)
        .map(|i| {
            let (q, a) = INSTRUCTIONS[i % INSTRUCTIONS.len()];
            exchange(&format!("{q} {i}"), a)
        })
        .collect();
    let data = sft_dataset(tmp.path(), "prompts", &conversations);
    let extra = format!(
        "{LORA}\n[grpo]\ngroup_size = 2\nmax_new_tokens = 6\n\n[[grpo.rules]]\nkind = \"contains\"\npattern = \"ball\"\n"
    );
    let (one, one_out) = post_config(tmp.path(), "one", &base, &data, 4, &extra);
    let (two, two_out) = post_config(tmp.path(), "two", &base, &data, 2, &extra);
    train_as_one_rank_and_two("grpo", &one, &two);
    // The same answers and rewards at every step; the loss is a near-cancelling sum close to
    // 0 (the advantages average to 0), so it is compared absolutely, the weights relatively.
    let (la, lb) = (metrics(&one_out), metrics(&two_out));
    let field = |lines: &[serde_json::Value], step: u64, name: &str| {
        lines
            .iter()
            .find(|l| l["kind"] == "train" && l["step"] == step)
            .and_then(|l| l[name].as_f64())
            .unwrap_or_else(|| panic!("no {name} at step {step}"))
    };
    for step in 1..=STEPS {
        for name in ["reward", "answer_length"] {
            let (x, y) = (field(&la, step, name), field(&lb, step, name));
            assert!((x - y).abs() <= 1e-6, "{name} at step {step}: {x} vs {y}");
        }
        let (x, y) = (loss_at(&la, step), loss_at(&lb, step));
        assert!((x - y).abs() <= 1e-6, "loss at step {step}: {x} vs {y}");
    }
    let ckpt = format!("checkpoints/step-{STEPS:08}/adapter.safetensors");
    let (wa, wb) = (
        read_safetensors(&one_out.join(&ckpt)).expect("one"),
        read_safetensors(&two_out.join(&ckpt)).expect("two"),
    );
    for (name, x) in &wa {
        let diff = f64::try_from((x - &wb[name]).abs().max()).expect("diff");
        let scale = f64::try_from(x.abs().max()).expect("scale");
        assert!(
            diff <= WEIGHT_TOLERANCE * scale.max(1e-12),
            "{name}: {diff} of {scale}"
        );
    }
}
