//! AdamW, schedules and clipping.

use tch::{Device, Kind, Tensor};
use trainer::engine::config::{OptimConfig, Schedule};
use trainer::engine::optim::{AdamW, learning_rate};

fn optim_config(schedule: Schedule) -> OptimConfig {
    OptimConfig {
        lr: 1.0,
        min_lr: 0.1,
        warmup_steps: 10,
        schedule,
        decay_fraction: 0.2,
        weight_decay: 0.5,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        grad_clip: 1.0,
    }
}

#[test]
fn schedules_warm_up_then_decay_to_min_lr() {
    let cosine = optim_config(Schedule::Cosine);
    assert!((learning_rate(&cosine, 1, 100) - 0.1).abs() < 1e-12);
    assert!((learning_rate(&cosine, 10, 100) - 1.0).abs() < 1e-12);
    assert!(
        (learning_rate(&cosine, 55, 100) - 0.55).abs() < 1e-12,
        "midpoint"
    );
    assert!((learning_rate(&cosine, 100, 100) - 0.1).abs() < 1e-12);
    let lrs: Vec<f64> = (10..=100).map(|s| learning_rate(&cosine, s, 100)).collect();
    assert!(lrs.windows(2).all(|w| w[1] <= w[0]), "cosine is monotone");

    let wsd = optim_config(Schedule::Wsd);
    assert!((learning_rate(&wsd, 50, 100) - 1.0).abs() < 1e-12);
    assert!(
        (learning_rate(&wsd, 80, 100) - 1.0).abs() < 1e-12,
        "stable until 80"
    );
    assert!((learning_rate(&wsd, 90, 100) - 0.55).abs() < 1e-12);
    assert!((learning_rate(&wsd, 100, 100) - 0.1).abs() < 1e-12);

    let constant = optim_config(Schedule::Constant);
    assert_eq!(learning_rate(&constant, 99, 100), 1.0);
}

fn leaf(values: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(values)
        .view(shape)
        .to_kind(Kind::Float)
        .set_requires_grad(true)
}

#[test]
fn weight_decay_touches_matrices_only() {
    let matrix = leaf(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let gain = leaf(&[1.0, 2.0], &[2]);
    let mut optim = AdamW::new(
        vec![
            ("m".into(), matrix.shallow_clone()),
            ("g".into(), gain.shallow_clone()),
        ],
        &optim_config(Schedule::Constant),
    )
    .expect("optim");
    // Zero gradients: Adam's update is 0, so only decoupled decay can move a weight.
    (matrix.sum(Kind::Float) * 0.0 + gain.sum(Kind::Float) * 0.0).backward();
    optim.step(0.1).expect("step");
    let m: Vec<f32> = Vec::try_from(matrix.detach().view([-1])).expect("vec");
    let g: Vec<f32> = Vec::try_from(gain.detach()).expect("vec");
    assert_eq!(m, vec![0.95, 1.9, 2.85, 3.8]);
    assert_eq!(g, vec![1.0, 2.0]);
}

#[test]
fn adamw_minimises_a_quadratic_and_its_state_round_trips() {
    let mut config = optim_config(Schedule::Constant);
    config.weight_decay = 0.0;
    let x = leaf(&[3.0, -2.0, 0.5], &[3]);
    let mut optim = AdamW::new(vec![("x".into(), x.shallow_clone())], &config).expect("optim");
    for _ in 0..300 {
        optim.zero_grad();
        x.square().sum(Kind::Float).backward();
        optim.step(0.05).expect("step");
    }
    let norm = f64::try_from(x.detach().norm()).expect("norm");
    assert!(norm < 0.05, "x should approach 0, |x| = {norm}");

    let saved: std::collections::BTreeMap<String, Tensor> = optim
        .state_tensors()
        .into_iter()
        .map(|(k, v)| (k, v.copy()))
        .collect();
    let y = leaf(&[0.0, 0.0, 0.0], &[3]);
    let mut other = AdamW::new(vec![("x".into(), y)], &config).expect("optim");
    other.load_state(&saved, optim.steps()).expect("load");
    assert_eq!(other.steps(), 300);
    for (name, t) in other.state_tensors() {
        assert!(t.equal(&saved[&name]), "{name}");
    }
    let mut bad: std::collections::BTreeMap<String, Tensor> =
        saved.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
    bad.insert(
        "exp_avg.x".into(),
        Tensor::zeros([4], (Kind::Float, Device::Cpu)),
    );
    assert!(other.load_state(&bad, 1).is_err());
}

#[test]
fn clipping_scales_the_global_norm() {
    let a = leaf(&[0.0, 0.0], &[2]);
    let b = leaf(&[0.0], &[1]);
    let mut optim = AdamW::new(
        vec![
            ("a".into(), a.shallow_clone()),
            ("b".into(), b.shallow_clone()),
        ],
        &optim_config(Schedule::Constant),
    )
    .expect("optim");
    // Gradients (3, 4) and (12): global norm 13.
    ((&a * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float) + (&b * 12.0).sum(Kind::Float))
        .backward();
    let norm = optim.grad_norm().expect("norm");
    assert!((norm - 13.0).abs() < 1e-5, "{norm}");
    optim.clip_grads(norm, 1.0).expect("clip");
    let clipped = optim.grad_norm().expect("norm");
    assert!((clipped - 1.0).abs() < 1e-4, "{clipped}");
    optim.clip_grads(clipped, 5.0).expect("no-op");
    assert!((optim.grad_norm().expect("norm") - clipped).abs() < 1e-9);
}
