//! Bad inputs end in one clear error naming the problem and what to change: never a panic
//! backtrace, never a half-written checkpoint.

use trainer::engine::config::{NonFinitePolicy, RunConfig};
use trainer::engine::error::{TrainError, explain_torch_error};
use trainer::engine::{Faults, Resume};
use trainer::pretrain::Trainer;

use crate::helpers::{
    datasets, metrics, tiny_config, tiny_config_file, tiny_config_toml, trainer_err, trainer_ok,
};

/// Errors come from anyhow's report, not from a panic.
fn assert_clean(stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "panic instead of an error:\n{stderr}"
    );
    assert!(stderr.contains("Error:"), "{stderr}");
}

#[test]
fn a_dataset_whose_vocabulary_does_not_match_the_model() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let path = tiny_config_file(tmp.path(), "c", &tmp.path().join("run"), 5);
    let text = std::fs::read_to_string(&path)
        .expect("config")
        .replace("[model]\n", "[model]\nvocab_size = 1000\n");
    std::fs::write(&path, text).expect("write");
    let stderr = trainer_err(&["pretrain", "--config", path.to_str().expect("utf8")]);
    assert_clean(&stderr);
    assert!(stderr.contains("vocab_size 320"), "{stderr}");
    assert!(stderr.contains("set model.vocab_size = 320"), "{stderr}");
}

#[test]
fn a_missing_a_truncated_and_a_corrupt_shard() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (train, _) = datasets(tmp.path());
    let config = tiny_config_file(tmp.path(), "c", &tmp.path().join("run"), 5);
    let config = config.to_str().expect("utf8");
    let shard = train.join("shard-00001.arrow");
    let bytes = std::fs::read(&shard).expect("shard");

    std::fs::remove_file(&shard).expect("remove");
    let stderr = trainer_err(&["pretrain", "--config", config]);
    assert_clean(&stderr);
    assert!(stderr.contains("shard-00001.arrow"), "{stderr}");

    std::fs::write(&shard, &bytes[..bytes.len() / 2]).expect("truncate");
    let stderr = trainer_err(&["pretrain", "--config", config]);
    assert_clean(&stderr);
    assert!(stderr.contains("shard-00001.arrow"), "{stderr}");

    let mut corrupt = bytes.clone();
    corrupt[..6].copy_from_slice(b"NOTARR");
    std::fs::write(&shard, &corrupt).expect("corrupt");
    let stderr = trainer_err(&["pretrain", "--config", config]);
    assert_clean(&stderr);
    assert!(
        stderr.contains("shard-00001.arrow") && stderr.contains("ARROW1"),
        "{stderr}"
    );
    assert!(
        !tmp.path().join("run/checkpoints").exists(),
        "nothing written"
    );
}

#[test]
fn a_checkpoint_from_another_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    datasets(tmp.path());
    let out = tmp.path().join("run");
    let path = tiny_config_file(tmp.path(), "c", &out, 20);
    let config = path.to_str().expect("utf8");
    trainer_ok(&["pretrain", "--config", config]);

    // A fresh run into the same directory is refused rather than clobbering it.
    let stderr = trainer_err(&["pretrain", "--config", config, "--steps", "40"]);
    assert_clean(&stderr);
    assert!(stderr.contains("--resume"), "{stderr}");

    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(&path, text.replace("hidden_size = 32", "hidden_size = 48")).expect("write");
    let stderr = trainer_err(&["pretrain", "--config", config, "--steps", "40", "--resume"]);
    assert_clean(&stderr);
    assert!(stderr.contains("another model config"), "{stderr}");
    assert!(stderr.contains("hidden_size: 32 vs 48"), "{stderr}");

    // Weights of another shape under a checkpoint's name: generate names the tensor.
    let other = tmp.path().join("other");
    trainer_ok(&[
        "pretrain",
        "--config",
        config,
        "--out",
        other.to_str().expect("utf8"),
        "--steps",
        "1",
    ]);
    let ckpt = out.join("checkpoints/step-00000020");
    std::fs::copy(
        other.join("checkpoints/step-00000001/model.safetensors"),
        ckpt.join("model.safetensors"),
    )
    .expect("swap weights");
    let stderr = trainer_err(&["generate", ckpt.to_str().expect("utf8"), "--device", "cpu"]);
    assert_clean(&stderr);
    assert!(stderr.contains("has shape"), "{stderr}");
}

#[test]
fn nan_loss_stops_with_the_step_and_last_checkpoint_or_is_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (train, valid) = datasets(tmp.path());
    let config = tiny_config(&train, &valid, &tmp.path().join("run"), 30);
    let mut run = Trainer::new(config.clone(), Resume::No, Faults::default()).expect("trainer");
    for _ in 0..20 {
        run.train_step().expect("step");
    }
    let saved = run.save_checkpoint().expect("checkpoint");
    poison(&run);
    let err = run.train_step().expect_err("NaN weights give a NaN loss");
    let message = err.to_string();
    assert!(
        matches!(
            err.downcast_ref::<TrainError>(),
            Some(TrainError::NonFinite { step: 21, .. })
        ),
        "{message}"
    );
    assert!(message.contains("step 21"), "{message}");
    assert!(message.contains(&saved.display().to_string()), "{message}");
    assert!(message.contains("on_nonfinite"), "{message}");

    let mut config = config;
    config.train.out = tmp.path().join("skip");
    config.train.on_nonfinite = NonFinitePolicy::Skip;
    config.train.steps = 3;
    let mut run = Trainer::new(config, Resume::No, Faults::default()).expect("trainer");
    poison(&run);
    run.run().expect("skipping goes on");
    let lines = metrics(&tmp.path().join("skip"));
    let skipped = lines.iter().filter(|l| l["skipped"] == true).count();
    assert_eq!(skipped, 3);
}

/// Fills every weight of the model with NaN.
fn poison(run: &Trainer) {
    tch::no_grad(|| {
        for (_, mut t) in run.model().named_tensors() {
            let _ = t.fill_(f64::NAN);
        }
    });
}

#[test]
fn out_of_memory_names_the_settings_to_lower() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config =
        RunConfig::parse(&tiny_config_toml(tmp.path(), tmp.path(), tmp.path(), 1)).expect("config");
    let err = explain_torch_error(
        tch::TchError::Torch("CUDA out of memory. Tried to allocate 2.00 GiB".into()),
        &config,
        12,
    );
    let message = err.to_string();
    assert!(
        message.contains("step 12") && message.contains("train.micro_batch_size"),
        "{message}"
    );
    let other = explain_torch_error(
        tch::TchError::Torch("index out of range".into()),
        &config,
        3,
    );
    assert!(!other.to_string().contains("micro_batch_size"), "{other}");
}

#[test]
fn config_typos_and_bad_values_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let good = tiny_config_toml(tmp.path(), tmp.path(), tmp.path(), 1);
    let err = RunConfig::parse(&good.replace("seq_len = 32", "seq_len = 32\nseq_length = 3"))
        .expect_err("unknown field");
    assert!(format!("{err:#}").contains("seq_length"), "{err:#}");
    let err =
        RunConfig::parse(&good.replace("seq_len = 32", "seq_len = 128")).expect_err("too long");
    assert!(err.to_string().contains("max_position_embeddings"), "{err}");
    let err = RunConfig::parse(&good.replace("device = \"cpu\"", "device = \"gpu\""))
        .expect_err("device");
    assert!(format!("{err:#}").contains("unknown device"), "{err:#}");
}
