//! The c10d process group across real processes on this machine (Gloo, one thread each):
//! the test binary starts copies of itself as the ranks (`rank_main`, ignored unless a
//! parent sets `JL_TEST_DIST`), and reads back what each printed.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};
use trainer::dist::world::{expand_nodelist, first_host};
use trainer::dist::{ProcessGroup, ReduceOp, World};

/// A free TCP port on localhost for a rendezvous.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `scenario` in `world` copies of this test binary; returns each rank's output.
fn run_ranks(scenario: &str, world: usize) -> Vec<Output> {
    let port = free_port().to_string();
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(&exe)
                .args(["dist::rank_main", "--exact", "--ignored", "--nocapture"])
                .env("JL_TEST_DIST", scenario)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("OMP_NUM_THREADS", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a rank")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("rank output"))
        .collect()
}

#[test]
#[ignore = "a rank of the multi-process tests, started by them with JL_TEST_DIST"]
fn rank_main() {
    let Ok(scenario) = std::env::var("JL_TEST_DIST") else {
        return;
    };
    tch::set_num_threads(1);
    let world = World::from_env().expect("env").expect("a world");
    // A short timeout where a rank hangs on purpose.
    let timeout = if scenario == "rank1-hangs" { 4 } else { 20 };
    let nccl = scenario == "nccl";
    let group = ProcessGroup::join(&world, Duration::from_secs(timeout), nccl).expect("join");
    let rank = world.rank as f32;
    match scenario.as_str() {
        "collectives" => {
            let t = Tensor::from_slice(&[rank + 1.0, 10.0 * rank]);
            group.all_reduce(&t, ReduceOp::Sum).expect("sum");
            println!("SUM {:?}", values(&t));
            let t = Tensor::from_slice(&[rank + 1.0]);
            group.all_reduce(&t, ReduceOp::Avg).expect("avg");
            println!("AVG {:?}", values(&t));
            let t = Tensor::from_slice(&[rank + 5.0, rank + 6.0]);
            group.broadcast(&t, 1).expect("broadcast");
            println!("BCAST {:?}", values(&t));
            let out = Tensor::zeros([2 * world.size as i64], (Kind::Float, tch::Device::Cpu));
            group
                .all_gather(&out, &Tensor::from_slice(&[rank, -rank]))
                .expect("gather");
            println!("GATHER {:?}", values(&out));
            group.barrier().expect("barrier");
        }
        "nccl" => {
            let device = tch::Device::Cuda(world.local_rank);
            let t = Tensor::from_slice(&[rank + 1.0]).to_device(device);
            group.all_reduce(&t, ReduceOp::Sum).expect("sum on the GPU");
            println!("SUM {:?}", values(&t.to_device(tch::Device::Cpu)));
            let t = Tensor::from_slice(&[rank + 5.0]).to_device(device);
            group.broadcast(&t, 1).expect("broadcast on the GPU");
            println!("BCAST {:?}", values(&t.to_device(tch::Device::Cpu)));
        }
        "rank1-dies" => {
            group.set_progress(1);
            group.barrier().expect("first barrier");
            if world.rank == 1 {
                std::process::abort();
            }
            std::thread::sleep(Duration::from_millis(200));
            let t = Tensor::from_slice(&[1.0f32]);
            let err = group.all_reduce(&t, ReduceOp::Sum).expect_err("peer died");
            println!("ERROR {err}");
        }
        "rank1-hangs" => {
            group.set_progress(1);
            group.barrier().expect("first barrier");
            if world.rank == 1 {
                std::thread::sleep(Duration::from_secs(8));
                return;
            }
            group.set_progress(2);
            let t = Tensor::from_slice(&[1.0f32]);
            let err = group.all_reduce(&t, ReduceOp::Sum).expect_err("peer hung");
            println!("ERROR {err}");
            // Leave without waiting for the hung rank.
            std::process::exit(0);
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t).expect("f32 values")
}

fn line(out: &Output, tag: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(tag).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| {
            panic!(
                "no {tag} line; stdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

#[test]
fn two_processes_all_reduce_broadcast_and_gather() {
    let outs = run_ranks("collectives", 2);
    for out in &outs {
        assert_eq!(line(out, "SUM"), "[3.0, 10.0]");
        assert_eq!(line(out, "AVG"), "[1.5]");
        assert_eq!(line(out, "BCAST"), "[6.0, 7.0]");
        assert_eq!(line(out, "GATHER"), "[0.0, -0.0, 1.0, -1.0]");
    }
}

#[test]
#[ignore = "needs 2 CUDA GPUs (scripts/bench-trainer-gpu-dist runs the NCCL path end to end)"]
fn two_gpus_all_reduce_and_broadcast_through_nccl() {
    for out in &run_ranks("nccl", 2) {
        assert_eq!(line(out, "SUM"), "[3.0]");
        assert_eq!(line(out, "BCAST"), "[6.0]");
    }
}

#[test]
fn a_dead_rank_fails_the_other_naming_it() {
    let started = Instant::now();
    let outs = run_ranks("rank1-dies", 2);
    assert!(!outs[1].status.success(), "rank 1 aborted");
    let err = line(&outs[0], "ERROR");
    eprintln!("{err}");
    assert!(err.contains("rank 1 stopped"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_hung_rank_times_out_the_other_naming_it() {
    let started = Instant::now();
    let outs = run_ranks("rank1-hangs", 2);
    let err = line(&outs[0], "ERROR");
    eprintln!("{err}");
    assert!(err.contains("rank 1 (at step 1) alive but behind"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn world_from_torchrun_and_slurm_variables() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(World::from_vars(vars(&[])).expect("parsed"), None);
    let w = World::from_vars(vars(&[
        ("RANK", "3"),
        ("WORLD_SIZE", "8"),
        ("LOCAL_RANK", "3"),
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "29400"),
    ]))
    .expect("parsed")
    .expect("a world");
    assert_eq!(
        (w.rank, w.size, w.local_rank, w.master_port),
        (3, 8, 3, 29400)
    );
    let w = World::from_vars(vars(&[
        ("SLURM_PROCID", "5"),
        ("SLURM_NTASKS", "16"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_JOB_NODELIST", "gpu[07-08,10],login1"),
    ]))
    .expect("parsed")
    .expect("a world");
    assert_eq!((w.rank, w.size, w.local_rank), (5, 16, 1));
    assert_eq!(w.master_addr, "gpu07");
    assert_eq!(w.master_port, 29500);
    // A world of one is a single process.
    assert_eq!(
        World::from_vars(vars(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("MASTER_ADDR", "x")
        ]))
        .expect("parsed"),
        None
    );
    let err = World::from_vars(vars(&[
        ("RANK", "2"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "x"),
    ]))
    .expect_err("refused");
    assert!(err.to_string().contains("rank 2 outside"), "{err}");
    assert_eq!(
        expand_nodelist("a[1-2]-ib[09-10],b").expect("parsed"),
        ["a1-ib09", "a1-ib10", "a2-ib09", "a2-ib10", "b"]
    );
    assert_eq!(first_host("node[01-04]").expect("parsed"), "node01");
    assert!(expand_nodelist("node[01-04").is_err());
}

/// The CUDA/NCCL path links: the trainer binary needs libtorch_cuda, and the dynamic loader
/// finds it, the CUDA runtime and NCCL (from the venv's nvidia wheels) with no library
/// missing. Only a CPU-only torch build (no libtorch_cuda in the venv) skips it.
#[test]
fn the_trainer_links_libtorch_cuda_and_the_loader_finds_nccl() {
    let venv_has_cuda = std::env::var_os("LIBTORCH_USE_PYTORCH").is_some()
        && Command::new(std::env::var("JIELONG_PYTHON").unwrap_or_else(|_| "python3".into()))
            .args(["-c", "import torch, os; print(os.path.exists(os.path.join(os.path.dirname(torch.__file__), 'lib', 'libtorch_cuda.so')))"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "True");
    if !venv_has_cuda {
        // CI installs the CUDA build from scripts/requirements.txt: there it must not skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI's venv has no libtorch_cuda.so"
        );
        eprintln!("skipped: the venv's torch has no libtorch_cuda.so (a CPU-only build)");
        return;
    }
    let out = Command::new("ldd")
        .arg(crate::helpers::TRAINER)
        .output()
        .expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd failed: {text}");
    assert!(!text.contains("not found"), "a library is missing:\n{text}");
    for lib in ["libtorch_cuda.so", "libcudart.so", "libnccl.so"] {
        assert!(
            text.lines().any(|l| l.contains(lib) && l.contains("=> /")),
            "{lib} is not resolved:\n{text}"
        );
    }
}
