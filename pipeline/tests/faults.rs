//! The fault cases of a split run: a task that fails on a corrupt input, a task killed
//! mid-run, two tasks given the same index, a config changed between stages, and, against the
//! S3 server, a missing bucket, wrong credentials and a throttling store (a proxy in front of
//! the server that answers 503 SlowDown). Each gives a clear error, `pipeline status` says
//! which task, and a rerun converges to the one-process bytes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pipeline::clean::{finish, run, run_task};
use pipeline::config::PipelineConfig;
use pipeline::shard::TaskSlice;
use pipeline::status::status;

use crate::cluster::{files, new_bucket, s3_endpoint, write_corpus};
use crate::helpers::warc;

fn config(dir: &Path, name: &str, inputs: &[PathBuf], out: &str) -> PathBuf {
    let paths: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
    let text = format!(
        "[input]\npaths = {paths:?}\n\n[output]\ndir = \"{out}\"\n\n[run]\nbatch_size = 4\nfail_on_error = true\n\n[dedup]\nexact = false\n\n[dedup.minhash]\nenabled = false\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn load(path: &Path) -> PipelineConfig {
    PipelineConfig::load(path).expect("config loads")
}

/// The outputs of one process over `inputs` (in `dir/whole`), what every split run must equal.
fn one_process(dir: &Path, inputs: &[PathBuf]) -> PathBuf {
    let whole = dir.join("whole");
    let config = config(dir, "whole", inputs, &whole.display().to_string());
    run(&load(&config), false).expect("one process");
    whole
}

/// The test corpus under `dir` and a split run of it into `dir/split`: (inputs, output, config).
fn local_split(dir: &Path) -> (Vec<PathBuf>, PathBuf, PipelineConfig) {
    let inputs = write_corpus(dir);
    let out = dir.join("split");
    let split = load(&config(dir, "split", &inputs, &out.display().to_string()));
    (inputs, out, split)
}

fn slice(i: usize, n: usize) -> Option<TaskSlice> {
    Some(TaskSlice::new(i, n).expect("slice"))
}

fn pipeline(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run pipeline")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `pipeline status --wait clean` with a timeout, and how long it took.
fn wait_clean(path: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let path = path.to_str().expect("utf-8");
    let args = [
        "status",
        path,
        "--tasks",
        "2",
        "--wait",
        "clean",
        "--timeout",
        "5",
    ];
    (pipeline(&args, &[]), started.elapsed())
}

#[test]
fn a_task_failing_on_a_corrupt_input_is_named_by_status_and_rerun_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut inputs = write_corpus(dir.path());
    // Sorted inputs: cc.warc.gz, corpus.jsonl, more.jsonl, zz-bad.jsonl -> task 1 owns
    // corpus.jsonl and zz-bad.jsonl.
    let bad = dir.path().join("zz-bad.jsonl");
    let good_line = serde_json::json!({"id": "z-1", "text": crate::helpers::good_english(7)});
    std::fs::write(&bad, format!("{good_line}\n{{\"id\": broken\n")).expect("write");
    inputs.push(bad.clone());
    let out = dir.path().join("split");
    let path = config(dir.path(), "split", &inputs, &out.display().to_string());
    let split = load(&path);

    run_task(&split, false, slice(0, 2)).expect("task 0");
    let err = run_task(&split, false, slice(1, 2)).expect_err("task 1 reads a corrupt line");
    assert!(
        format!("{err:#}").contains("zz-bad.jsonl: line 2"),
        "{err:#}"
    );
    let state = status(&split, None).expect("status");
    assert_eq!(state.tasks, 2);
    let clean = &state.stages[0];
    assert_eq!(clean.done, vec![0]);
    assert_eq!(clean.failed.len(), 1, "{clean:?}");
    assert_eq!(clean.failed[0].task, 1);
    let error = clean.failed[0].attempt.error.clone().unwrap_or_default();
    assert!(error.contains("zz-bad.jsonl: line 2"), "{error}");
    assert!(
        state.render().contains("failed: clean task 1"),
        "{}",
        state.render()
    );
    // The command line says the same, as a table and as JSON.
    let printed = pipeline(&["status", &path.display().to_string()], &[]);
    assert!(printed.status.success(), "{}", text(&printed));
    assert!(
        text(&printed).contains("zz-bad.jsonl: line 2"),
        "{}",
        text(&printed)
    );
    let json = pipeline(&["status", &path.display().to_string(), "--json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("status --json");
    assert_eq!(json["stages"][0]["failed"][0]["task"], 1);
    assert_eq!(json["stages"][1]["not_started"], serde_json::json!([0]));
    let err = finish(&split, 2).expect_err("finish before every task is done");
    assert!(format!("{err:#}").contains("tasks [1] of 2"), "{err:#}");
    // Waiting for a stage after a failed task fails at once, naming it; with the failure
    // given an hour's grace (a scheduler's retry), the wait runs into its timeout instead.
    let wait = |extra: &[&str]| {
        let started = Instant::now();
        let mut args = vec!["status", path.to_str().expect("utf-8"), "--tasks", "2"];
        args.extend_from_slice(&["--wait", "finish", "--poll-seconds", "1"]);
        args.extend_from_slice(extra);
        (pipeline(&args, &[]), started.elapsed())
    };
    let (failed, took) = wait(&["--timeout", "600"]);
    assert!(!failed.status.success(), "{}", text(&failed));
    assert!(took < Duration::from_secs(30), "{took:?}");
    for part in ["failed task(s)", "clean task 1 on", "zz-bad.jsonl: line 2"] {
        assert!(text(&failed).contains(part), "{part}: {}", text(&failed));
    }
    let (late, took) = wait(&["--timeout", "2", "--failed-grace", "3600"]);
    assert!(!late.status.success(), "{}", text(&late));
    assert!(
        text(&late).contains("timed out after 2 s with 0 of 1 tasks done"),
        "{}",
        text(&late)
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "{took:?}"
    );

    // Fix the input and rerun the stage: only task 1 runs again.
    std::fs::write(&bad, format!("{good_line}\n")).expect("fix");
    let marker0 = out.join("tasks/clean-00000-of-00002.json");
    let before = std::fs::metadata(&marker0)
        .and_then(|m| m.modified())
        .expect("mtime");
    let kept0 = out.join("kept/part-00000.jsonl.zst");
    std::fs::write(&kept0, b"left alone").expect("write");
    for i in [0, 1] {
        run_task(&split, false, slice(i, 2)).expect("rerun");
    }
    assert_eq!(std::fs::read(&kept0).expect("read"), b"left alone");
    let after = std::fs::metadata(&marker0)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(before, after);
    assert!(!out.join("tasks/clean-00001-of-00002.failed.json").exists());
    let state = status(&split, Some(2)).expect("status");
    assert!(state.stages[0].is_done(), "{state:?}");
    let (waited, _) = wait_clean(&path);
    assert!(waited.status.success(), "{}", text(&waited));
    finish(&split, 2).expect("finish");
    assert!(status(&split, None).expect("status").stages[1].is_done());

    // The bytes of one process over the fixed inputs (task 0's kept file restored first).
    let whole = one_process(dir.path(), &inputs);
    std::fs::copy(whole.join("kept/part-00000.jsonl.zst"), &kept0).expect("restore");
    assert_eq!(files(&out), files(&whole));
}

#[test]
fn a_task_killed_mid_run_is_never_taken_for_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Enough input that the debug build is still at work when it is killed.
    let mut inputs = Vec::new();
    for i in 0..4 {
        for name in [
            "dolma-sample-0000.warc.gz",
            "resiliparse-clueweb-quirk.warc.gz",
        ] {
            let copy = dir.path().join(format!("{i}-{name}"));
            std::fs::copy(warc(name), &copy).expect("copy");
            inputs.push(copy);
        }
    }
    let out = dir.path().join("split");
    let path = config(dir.path(), "split", &inputs, &out.display().to_string());
    let split = load(&path);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline"))
        .args([
            "clean",
            &path.display().to_string(),
            "--task",
            "0",
            "--tasks",
            "2",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start task 0");
    let running = out.join("tasks/clean-00000-of-00002.running.json");
    let started = Instant::now();
    while !running.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "task 0 never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // Let it write some work files, then SIGKILL it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("poll").is_none(),
        "task 0 finished before it could be killed: give it more input"
    );
    child.kill().expect("kill");
    child.wait().expect("reap");

    assert!(!out.join("tasks/clean-00000-of-00002.json").exists());
    let state = status(&split, Some(2)).expect("status");
    assert_eq!(state.stages[0].done, Vec::<usize>::new());
    assert_eq!(state.stages[0].running.len(), 1, "{state:?}");
    assert_eq!(state.stages[0].running[0].task, 0);
    let err = finish(&split, 2).expect_err("task 0 is not done");
    assert!(format!("{err:#}").contains("tasks [0, 1] of 2"), "{err:#}");
    // Resubmitting the stage converges to the one-process bytes.
    for i in [0, 1] {
        run_task(&split, false, slice(i, 2)).expect("rerun");
    }
    assert!(!running.exists());
    finish(&split, 2).expect("finish");
    let whole = one_process(dir.path(), &inputs);
    assert_eq!(files(&out), files(&whole));
}

#[test]
fn two_tasks_given_the_same_index_leave_the_one_process_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inputs, out, split) = local_split(dir.path());
    std::thread::scope(|scope| {
        let twins: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| run_task(&split, false, slice(0, 2))))
            .collect();
        for twin in twins {
            twin.join().expect("no panic").expect("task 0");
        }
    });
    run_task(&split, false, slice(1, 2)).expect("task 1");
    finish(&split, 2).expect("finish");
    let whole = one_process(dir.path(), &inputs);
    assert_eq!(files(&out), files(&whole));
}

#[test]
fn a_config_changed_between_stages_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, out, split) = local_split(dir.path());
    for i in [0, 1] {
        run_task(&split, false, slice(i, 2)).expect("task");
    }
    let mut changed = split.clone();
    changed.filters.c4.min_words_per_line += 1;
    let err = finish(&changed, 2).expect_err("changed config");
    let msg = format!("{err:#}");
    assert!(msg.contains("filters.c4.min_words_per_line"), "{msg}");
    assert!(msg.contains("clean-00000-of-00002.json"), "{msg}");
    assert!(!out.join("summary.json").exists());
    // `status` shows the refused stage with its error; the right config still finishes.
    let state = status(&split, None).expect("status");
    assert_eq!(state.stages[1].failed.len(), 1, "{state:?}");
    finish(&split, 2).expect("finish");
    assert!(status(&split, None).expect("status").stages[1].is_done());
}

#[test]
fn a_missing_output_bucket_is_a_clear_error() {
    let Some(_) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_corpus(dir.path());
    let split = load(&config(
        dir.path(),
        "nb",
        &inputs,
        "s3://no-such-bucket-jielong/out",
    ));
    let err = run_task(&split, false, slice(0, 2)).expect_err("no bucket");
    let msg = format!("{err:#}");
    assert!(msg.contains("s3://no-such-bucket-jielong/out"), "{msg}");
    assert!(msg.contains("NoSuchBucket"), "{msg}");
}

/// A proxy in front of the S3 server that answers the first `refuse` requests with 503
/// SlowDown (each on its own connection, its body read first) and passes the rest through.
struct ThrottlingProxy {
    endpoint: String,
    refused: Arc<AtomicUsize>,
}

fn throttling_proxy(upstream: &str, refuse: usize) -> ThrottlingProxy {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let upstream = upstream.trim_start_matches("http://").to_string();
    let refused = Arc::new(AtomicUsize::new(0));
    let count = refused.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, count) = (upstream.clone(), count.clone());
            std::thread::spawn(move || relay(client, &upstream, &count, refuse));
        }
    });
    ThrottlingProxy { endpoint, refused }
}

fn relay(mut client: TcpStream, upstream: &str, refused: &AtomicUsize, refuse: usize) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let body: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if refused.fetch_add(1, Ordering::SeqCst) < refuse {
        while seen.len() < head_end + body {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        let reply = format!(
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        );
        client.write_all(reply.as_bytes()).ok();
        return;
    }
    refused.fetch_sub(1, Ordering::SeqCst);
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    if server.write_all(&seen).is_err() {
        return;
    }
    let (Ok(mut server_rx), Ok(mut client_tx)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        std::io::copy(&mut server_rx, &mut client_tx).ok();
        client_tx.shutdown(std::net::Shutdown::Write).ok();
    });
    std::io::copy(&mut client, &mut server).ok();
    server.shutdown(std::net::Shutdown::Write).ok();
}

#[test]
fn a_throttling_store_is_retried_and_one_that_never_stops_fails_in_bounded_time() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_corpus(dir.path());
    let bucket = new_bucket(&endpoint, "slow");
    let whole = one_process(dir.path(), &inputs);
    let expected = files(&whole);

    // The first 6 requests are refused: object_store's backoff retries them.
    let proxy = throttling_proxy(&endpoint, 6);
    let out = format!("s3://{bucket}/slow");
    let path = config(dir.path(), "slow", &inputs, &out);
    let scratch = dir.path().join("scratch");
    let env = [
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("JIELONG_SCRATCH", scratch.to_str().expect("utf-8")),
    ];
    let ran = pipeline(
        &[
            "clean",
            &path.display().to_string(),
            "--task",
            "0",
            "--tasks",
            "1",
        ],
        &env,
    );
    assert!(ran.status.success(), "{}", text(&ran));
    assert_eq!(proxy.refused.load(Ordering::SeqCst), 6);
    let got = crate::cluster::remote_files(&out, &expected, &dir.path().join("check"));
    assert_eq!(got, expected);
    let printed = pipeline(&["status", &path.display().to_string(), "--json"], &env);
    let json: serde_json::Value = serde_json::from_slice(&printed.stdout).expect("status --json");
    assert_eq!(json["stages"][0]["done"], serde_json::json!([0]), "{json}");

    // A store that only ever answers 503 fails with the cause, in bounded time.
    let proxy = throttling_proxy(&endpoint, usize::MAX);
    let env = [
        ("AWS_ENDPOINT_URL", proxy.endpoint.as_str()),
        ("JIELONG_SCRATCH", scratch.to_str().expect("utf-8")),
    ];
    let started = Instant::now();
    let ran = pipeline(
        &[
            "clean",
            &path.display().to_string(),
            "--task",
            "0",
            "--tasks",
            "2",
        ],
        &env,
    );
    let took = started.elapsed();
    assert!(!ran.status.success());
    let msg = text(&ran);
    assert!(msg.contains("503") || msg.contains("SlowDown"), "{msg}");
    assert!(msg.contains(&out), "{msg}");
    assert!(took < Duration::from_secs(200), "took {took:?}");
    eprintln!("always-503 store: failed after {took:?}: {}", msg.trim());
}

#[test]
fn wrong_credentials_are_a_clear_error() {
    let Some(_) = s3_endpoint() else {
        return;
    };
    // A second server that checks credentials (moto's IAM auth from the first request on):
    // the test's keys exist in no account there.
    let venv = std::env::var("JIELONG_VENV").expect("JIELONG_VENV (scripts/env.sh)");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut server = Command::new(format!("{venv}/bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_corpus(dir.path());
    let path = config(dir.path(), "creds", &inputs, "s3://jielong-creds/out");
    let started = Instant::now();
    let ran = pipeline(
        &[
            "clean",
            &path.display().to_string(),
            "--task",
            "0",
            "--tasks",
            "2",
        ],
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1"),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ],
    );
    server.kill().ok();
    server.wait().ok();
    assert!(!ran.status.success());
    let msg = text(&ran);
    assert!(msg.contains("s3://jielong-creds/out"), "{msg}");
    assert!(
        msg.contains("403") || msg.contains("InvalidAccessKeyId"),
        "{msg}"
    );
    eprintln!("wrong credentials: {}", msg.trim());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "credentials errors are not retried"
    );
}

#[test]
fn two_machines_given_the_same_index_over_s3_leave_the_one_process_bytes() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = write_corpus(dir.path());
    let bucket = new_bucket(&endpoint, "twins");
    let out = format!("s3://{bucket}/twins");
    let path = config(dir.path(), "twins", &inputs, &out);
    // Separate scratch directories, as on two machines: no shared lock, both upload.
    let twins: Vec<_> = ["a", "b"]
        .iter()
        .map(|machine| {
            Command::new(env!("CARGO_BIN_EXE_pipeline"))
                .args([
                    "clean",
                    &path.display().to_string(),
                    "--task",
                    "0",
                    "--tasks",
                    "2",
                ])
                .env("JIELONG_SCRATCH", dir.path().join(machine))
                .env("RUST_BACKTRACE", "0")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start a twin")
        })
        .collect();
    for twin in twins {
        let done = twin.wait_with_output().expect("twin");
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    let split = load(&path);
    run_task(&split, false, slice(1, 2)).expect("task 1");
    finish(&split, 2).expect("finish");
    let state = status(&split, None).expect("status");
    assert!(
        state
            .stages
            .iter()
            .all(|s| s.is_done() && s.failed.is_empty()),
        "{state:?}"
    );
    let whole = one_process(dir.path(), &inputs);
    let expected = files(&whole);
    let got = crate::cluster::remote_files(&out, &expected, &dir.path().join("check"));
    assert_eq!(got, expected);
}
