//! Load benchmark of the labeler (run through `scripts/bench-labeler`): starts `labeler serve`
//! as a separate process on a fresh database, imports items over HTTP, then `annotators`
//! concurrent clients each repeat one annotator cycle (fetch the next item + submit) on
//! loopback, bounded by `cycles` and `seconds`. Two modes:
//!
//! - `closed` (default): each annotator starts its next cycle as soon as the last returns (plus
//!   an optional think time): the maximum throughput. With 100 clients and no think time the
//!   mean latency is about 100 / throughput (Little's law), so it says little about latency.
//! - `open`: the annotators together offer `rate` cycles/s on a fixed schedule (each one every
//!   `annotators / rate` seconds, staggered), in the manner of wrk2. Latency is measured from
//!   the *scheduled* start, so a slow reply that delays the following cycles is counted in
//!   them too (no coordinated omission).
//!
//! Prints latency percentiles, achieved cycles/s, the CPU time per cycle of the server,
//! PostgreSQL and the client, the load average, and import/export times.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use labeler::domain::{Password, Role, Username};
use labeler::store::accounts;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::db::TestDatabase;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Closed,
    Open,
}

#[derive(Debug)]
struct Args {
    mode: Mode,
    /// Offered cycles/s of all annotators together (open mode).
    rate: f64,
    annotators: usize,
    items: usize,
    cycles: usize,
    seconds: u64,
    /// Pause after each cycle, like an annotator reading (0: saturate the server).
    think_ms: u64,
    server: String,
}

fn args() -> Result<Args> {
    let mut a = Args {
        mode: Mode::Closed,
        rate: 500.0,
        annotators: 100,
        items: 100_000,
        cycles: 30_000,
        seconds: 30,
        think_ms: 0,
        server: "target/release/labeler".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => {
                a.mode = match value.as_str() {
                    "closed" => Mode::Closed,
                    "open" => Mode::Open,
                    other => bail!("--mode {other}: expected closed or open"),
                }
            }
            "--rate" => a.rate = value.parse()?,
            "--annotators" => a.annotators = value.parse()?,
            "--items" => a.items = value.parse()?,
            "--cycles" => a.cycles = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            "--think-ms" => a.think_ms = value.parse()?,
            "--server" => a.server = value,
            other => bail!("unknown flag {other}"),
        }
    }
    ensure!(a.annotators > 0, "--annotators must be at least 1");
    ensure!(
        a.rate > 0.0 && a.rate.is_finite(),
        "--rate must be a positive number"
    );
    Ok(a)
}

/// One successful cycle: from its scheduled start (open mode; else its actual start) and from
/// its actual start to the reply of the submit.
struct Timing {
    latency: Duration,
    service: Duration,
}

/// One annotator's client: an API token and the project to work in.
struct Annotator {
    http: reqwest::Client,
    base: String,
    project: i64,
    token: String,
}

impl Annotator {
    /// Fetch the next item, then submit a verdict on it.
    async fn cycle(&self) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/api/projects/{}/next", self.base, self.project))
            .bearer_auth(&self.token)
            .send()
            .await?;
        ensure!(r.status() == 200, "next: {}", r.status());
        let task: Value = r.json().await?;
        let id = task["assignment_id"]
            .as_i64()
            .context("next: no assignment_id")?;
        let r = self
            .http
            .post(format!("{}/api/assignments/{id}/submit", self.base))
            .bearer_auth(&self.token)
            .header("Idempotency-Key", format!("k{id}"))
            .json(&json!({"choice": if id % 2 == 0 { "a" } else { "b" }}))
            .send()
            .await?;
        ensure!(r.status() == 201, "submit: {}", r.status());
        Ok(())
    }
}

/// CPU seconds (user + system) used so far by the server, the PostgreSQL cluster (the
/// postmaster, its children, and children that have exited) and this process.
#[derive(Debug, Clone, Copy)]
struct CpuTimes {
    server: f64,
    postgres: f64,
    client: f64,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// (utime + stime, cutime + cstime, parent pid) of a process, in seconds.
fn proc_cpu(pid: u32) -> Option<(f64, f64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // Fields counted from `state` (field 3 of proc(5)): ppid 4, utime 14 .. cstime 17.
    let ppid = f.get(1)?.parse().ok()?;
    Some((
        (num(11)? + num(12)?) / CLOCK_TICKS,
        (num(13)? + num(14)?) / CLOCK_TICKS,
        ppid,
    ))
}

impl CpuTimes {
    fn now(server: u32, postmaster: Option<u32>) -> Result<Self> {
        let (server_cpu, ..) = proc_cpu(server).context("reading the server's /proc stat")?;
        let (client, ..) = proc_cpu(std::process::id()).context("reading /proc/self/stat")?;
        let mut postgres = 0.0;
        if let Some(pm) = postmaster {
            for entry in std::fs::read_dir("/proc")?.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                match proc_cpu(pid) {
                    Some((own, _, parent)) if parent == pm => postgres += own,
                    Some((own, children, _)) if pid == pm => postgres += own + children,
                    _ => {}
                }
            }
        }
        Ok(Self {
            server: server_cpu,
            postgres,
            client,
        })
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            server: self.server - before.server,
            postgres: self.postgres - before.postgres,
            client: self.client - before.client,
        }
    }
}

/// The postmaster's pid, from `postmaster.pid` in the data directory (`None` when the server
/// is elsewhere or the role may not read the setting: PostgreSQL's CPU is then not shown).
async fn postmaster_pid(pool: &PgPool) -> Result<Option<u32>> {
    let dir: Option<String> = sqlx::query_scalar("SELECT current_setting('data_directory')")
        .fetch_one(pool)
        .await
        .ok();
    Ok(dir
        .and_then(|d| std::fs::read_to_string(format!("{d}/postmaster.pid")).ok())
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok())))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn percentiles(sorted: &[Duration]) -> String {
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(sorted, 0.50),
        percentile(sorted, 0.90),
        percentile(sorted, 0.99),
        percentile(sorted, 1.0)
    )
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = args()?;
    // A database of its own on the DATABASE_URL server (scripts/pg start), dropped afterwards.
    let database = TestDatabase::create().await;
    let result = run(&args, &database.url).await;
    database.drop_database().await;
    result
}

async fn run(args: &Args, db_url: &str) -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = Command::new(&args.server)
        .arg("serve")
        .env("DATABASE_URL", db_url)
        .env("LABELER_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.server))?;
    let outcome = load(args, db_url, port, server.id()).await;
    let _ = server.kill();
    let _ = server.wait();
    outcome
}

async fn load(args: &Args, db_url: &str, port: u16, server_pid: u32) -> Result<()> {
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.annotators)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("server did not come up");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool = PgPool::connect(db_url).await?;

    // Accounts and tokens.
    let password = Password::parse("benchmark-password".into()).map_err(anyhow::Error::msg)?;
    let admin = Username::parse("admin").map_err(anyhow::Error::msg)?;
    accounts::add_user(&pool, &admin, &password, Role::Admin).await?;
    let admin_token = accounts::create_token(&pool, &admin, "bench").await?;
    let mut tokens = Vec::new();
    for i in 0..args.annotators {
        let name = Username::parse(&format!("a{i}")).map_err(anyhow::Error::msg)?;
        accounts::add_user(&pool, &name, &password, Role::Annotator).await?;
        tokens.push(accounts::create_token(&pool, &name, "bench").await?);
    }

    // Project and import.
    let project: Value = http
        .post(format!("{base}/api/projects"))
        .bearer_auth(&admin_token)
        .json(&json!({"name": "bench", "kind": "preference", "overlap": 1}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let project = project["id"].as_i64().context("project id")?;
    let mut body = String::with_capacity(args.items * 300);
    for i in 0..args.items {
        body.push_str(
            &json!({"id": format!("q{i}"), "prompt": format!("Question {i}: explain something in detail."),
                "candidates": [
                    {"content": format!("A first answer to question {i}, a few sentences long."), "checkpoint": "step-100"},
                    {"content": format!("A second answer to question {i}, a few sentences long."), "checkpoint": "step-200"}]})
            .to_string(),
        );
        body.push('\n');
    }
    let mb = body.len() as f64 / 1e6;
    let started = Instant::now();
    let r = http
        .post(format!("{base}/api/projects/{project}/items"))
        .bearer_auth(&admin_token)
        .body(body)
        .send()
        .await?;
    let status = r.status();
    if !status.is_success() {
        bail!("import: {status} {}", r.text().await.unwrap_or_default());
    }
    println!(
        "import: {} items ({mb:.1} MB JSONL) in {:.2}s over HTTP",
        args.items,
        started.elapsed().as_secs_f64()
    );

    // The load.
    let postmaster = postmaster_pid(&pool).await?;
    let cpu_before = CpuTimes::now(server_pid, postmaster)?;
    let load_before = load_average();
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(args.seconds);
    let budget = Arc::new(AtomicUsize::new(args.cycles));
    let mut handles = Vec::new();
    for (k, token) in tokens.into_iter().enumerate() {
        let annotator = Annotator {
            http: http.clone(),
            base: base.clone(),
            project,
            token,
        };
        let budget = budget.clone();
        let schedule = match args.mode {
            Mode::Closed => None,
            // Annotator k starts k / rate seconds in, then goes every annotators / rate.
            Mode::Open => Some((
                started + Duration::from_secs_f64(k as f64 / args.rate),
                Duration::from_secs_f64(args.annotators as f64 / args.rate),
            )),
        };
        let think = Duration::from_millis(args.think_ms);
        handles.push(tokio::spawn(async move {
            let mut timings = Vec::new();
            let mut errors = 0usize;
            let mut next_start = schedule.map(|(first, _)| first);
            loop {
                if let Some(at) = next_start {
                    if at >= stop_at {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                } else if Instant::now() >= stop_at {
                    break;
                }
                if budget
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let began = Instant::now();
                let ok = annotator.cycle().await;
                let done = Instant::now();
                match ok {
                    Ok(()) => timings.push(Timing {
                        // From the scheduled start in open mode: waiting for a late
                        // previous cycle counts.
                        latency: done - next_start.unwrap_or(began),
                        service: done - began,
                    }),
                    Err(_) => errors += 1,
                }
                match (&mut next_start, schedule) {
                    (Some(at), Some((_, every))) => *at += every,
                    _ if !think.is_zero() => tokio::time::sleep(think).await,
                    _ => {}
                }
            }
            (timings, errors)
        }));
    }
    let mut timings = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (t, e) = h.await?;
        timings.extend(t);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = CpuTimes::now(server_pid, postmaster)?.since(&cpu_before);
    let load_after = load_average();
    let cycles = timings.len();
    let mut latency: Vec<Duration> = timings.iter().map(|t| t.latency).collect();
    let mut service: Vec<Duration> = timings.iter().map(|t| t.service).collect();
    latency.sort();
    service.sort();
    match args.mode {
        Mode::Closed => println!(
            "load (closed loop): {} annotators, think time {} ms, {cycles} cycles (next + submit) \
             in {wall:.2}s, {errors} errors",
            args.annotators, args.think_ms
        ),
        Mode::Open => println!(
            "load (open loop): {} annotators offering {:.0} cycles/s together, {cycles} cycles \
             (next + submit) in {wall:.2}s, {errors} errors",
            args.annotators, args.rate
        ),
    }
    println!(
        "cycle latency{}: {}; throughput {:.0} cycles/s",
        if args.mode == Mode::Open {
            " from the scheduled start"
        } else {
            ""
        },
        percentiles(&latency),
        cycles as f64 / wall
    );
    if args.mode == Mode::Open {
        println!(
            "cycle service time (from the actual start): {}",
            percentiles(&service)
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_cycle = |secs: f64| secs * 1000.0 / cycles.max(1) as f64;
    println!(
        "CPU per cycle: server {:.2} ms, PostgreSQL {:.2} ms, this client {:.2} ms \
         ({cores} cores give {:.2} ms per cycle at this throughput)",
        per_cycle(cpu.server),
        per_cycle(cpu.postgres),
        per_cycle(cpu.client),
        per_cycle(cores as f64 * wall)
    );
    println!("load average (1, 5, 15 min): before {load_before}, after {load_after}");
    // Export what was labelled.
    let started = Instant::now();
    let text = http
        .get(format!("{base}/api/projects/{project}/export?part=pairs"))
        .bearer_auth(&admin_token)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    println!(
        "export: {} pairs ({:.1} MB) in {:.2}s over HTTP",
        text.lines().count(),
        text.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM responses")
        .fetch_one(&pool)
        .await?;
    if stored as usize != cycles {
        bail!("{cycles} cycles succeeded but {stored} responses are stored");
    }
    pool.close().await;
    Ok(())
}
