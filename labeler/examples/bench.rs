//! Load benchmark of the labeler (run through `scripts/bench-labeler`): starts `labeler serve`
//! as a separate process on a fresh database, imports items over HTTP, then `annotators`
//! concurrent clients each loop "fetch next item + submit" on loopback, bounded by `cycles`
//! and `seconds`, with an optional think time. Prints import/export times, p50/p99 cycle latency and throughput.

use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use labeler::accounts;
use labeler::domain::{Password, Role, Username};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgPool};

#[derive(Debug)]
struct Args {
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
            "--annotators" => a.annotators = value.parse()?,
            "--items" => a.items = value.parse()?,
            "--cycles" => a.cycles = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            "--think-ms" => a.think_ms = value.parse()?,
            "--server" => a.server = value,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
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
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL (scripts/pg start)")?;
    let server_opts = PgConnectOptions::from_str(&url)?;
    let db = format!("bench_{}", std::process::id());
    let mut admin_conn = server_opts.clone().database("postgres").connect().await?;
    admin_conn
        .execute(format!(r#"CREATE DATABASE "{db}""#).as_str())
        .await?;
    let result = run(&args, &url, &server_opts, &db).await;
    admin_conn
        .execute(format!(r#"DROP DATABASE IF EXISTS "{db}" WITH (FORCE)"#).as_str())
        .await?;
    admin_conn.close().await?;
    result
}

async fn run(args: &Args, url: &str, server_opts: &PgConnectOptions, db: &str) -> Result<()> {
    let db_url = {
        let (base, query) = url
            .split_once('?')
            .map_or((url, None), |(b, q)| (b, Some(q)));
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        match query {
            Some(q) => format!("{base}/{db}?{q}"),
            None => format!("{base}/{db}"),
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = Command::new(&args.server)
        .arg("serve")
        .env("DATABASE_URL", &db_url)
        .env("LABELER_PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", args.server))?;
    let outcome = load(args, &db_url, port, server_opts).await;
    let _ = server.kill();
    let _ = server.wait();
    outcome
}

async fn load(args: &Args, db_url: &str, port: u16, _: &PgConnectOptions) -> Result<()> {
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

    // The load: each annotator loops next + submit.
    let budget = Arc::new(AtomicUsize::new(args.cycles));
    let stop_at = Instant::now() + Duration::from_secs(args.seconds);
    let think = Duration::from_millis(args.think_ms);
    let started = Instant::now();
    let mut handles = Vec::new();
    for token in tokens {
        let http = http.clone();
        let base = base.clone();
        let budget = budget.clone();
        handles.push(tokio::spawn(async move {
            let mut cycles = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < stop_at
                && budget
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
                    .is_ok()
            {
                let t0 = Instant::now();
                let next = http
                    .post(format!("{base}/api/projects/{project}/next"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                let task: Value = match next {
                    Ok(r) if r.status() == 200 => r.json().await.unwrap_or_default(),
                    _ => {
                        errors += 1;
                        continue;
                    }
                };
                let Some(id) = task["assignment_id"].as_i64() else {
                    errors += 1;
                    continue;
                };
                let submit = http
                    .post(format!("{base}/api/assignments/{id}/submit"))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", format!("k{id}"))
                    .json(&json!({"choice": if id % 2 == 0 { "a" } else { "b" }}))
                    .send()
                    .await;
                match submit {
                    Ok(r) if r.status() == 201 => cycles.push(t0.elapsed()),
                    _ => errors += 1,
                }
                if !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
            }
            (cycles, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (c, e) = h.await?;
        all.extend(c);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "load: {} annotators (think time {} ms), {} cycles (next + submit) in {wall:.2}s, {errors} errors",
        args.annotators,
        args.think_ms,
        all.len()
    );
    println!(
        "cycle latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; throughput {:.0} cycles/s",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
        all.len() as f64 / wall
    );

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
    if stored as usize != all.len() {
        bail!(
            "{} cycles succeeded but {stored} responses are stored",
            all.len()
        );
    }
    pool.close().await;
    Ok(())
}
