//! Helpers for the end-to-end tests: locating the workspace's binaries and running them, a
//! fresh database per test on the project's PostgreSQL server, a running `labeler serve`, and
//! blocking JSON calls to it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root (holds `configs/`, `migrations/`). Resolved at run time from the
/// variable cargo sets for test runs, not baked in with `env!`: the cargo target dir is
/// shared between clones, and a build reused from a clone at another path must not point
/// there.
pub fn workspace_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|dir| dir.parent().map(PathBuf::from))
        .expect("CARGO_MANIFEST_DIR (set by cargo when it runs tests)")
}

/// Path of a workspace binary built next to this test (`target/<profile>/NAME`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/e2e-HASH -> target/<profile>/NAME
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// Runs a workspace binary from the workspace root and returns its output.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(binary(name))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// A new, empty database on the test server; returns its URL.
pub fn create_database() -> String {
    use sqlx::Connection;
    use sqlx::Executor;
    let url = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the tests through scripts/test");
    // Unique per process and call: tests in one binary run in parallel.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("e2e_{}_{n}", std::process::id());
    let options = sqlx::postgres::PgConnectOptions::from_str(&url).expect("DATABASE_URL parses");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect_with(&options.database("postgres"))
            .await
            .expect("connect to the maintenance database");
        conn.execute(format!(r#"DROP DATABASE IF EXISTS "{name}""#).as_str())
            .await
            .expect("drop old test database");
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create test database");
    });
    let (base, query) = url
        .split_once('?')
        .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

pub fn run_bin(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary(name));
    command
        .args(args)
        .current_dir(workspace_root())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("LABELER_TOKEN")
        .env_remove("LABELER_URL");
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// Requires success; returns stdout.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Requires failure; returns stderr.
pub fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `labeler serve` on port 0, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(database_url: &str) -> Server {
    let mut child = Command::new(binary("labeler"))
        .arg("serve")
        .current_dir(workspace_root())
        .env("DATABASE_URL", database_url)
        .env("LABELER_PORT", "0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("labeler serve");
    let stdout = child.stdout.take().expect("stdout");
    let started = Instant::now();
    let mut address = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Some(at) = line.find("http://") {
            address = Some(line[at..].trim().to_string());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "labeler did not start"
        );
    }
    // Keep reading its log, so a full pipe never blocks the server.
    std::thread::spawn(move || lines.for_each(drop));
    Server {
        child,
        address: address.expect("labeler printed its address"),
    }
}

/// A blocking JSON call: (status, body or Null).
pub fn call(method: &str, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut request = match method {
            "GET" => client.get(url),
            _ => client.post(url),
        }
        .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
}

/// The id printed by `labeler project create` ("... (id N)").
pub fn project_id(stdout: &str) -> String {
    stdout
        .rsplit_once("(id ")
        .and_then(|(_, rest)| rest.split(')').next())
        .expect("project id in output")
        .to_string()
}

/// A labeler on a fresh database, prepared through its CLI as a lead would: an admin
/// (`lead`) and an annotator (`annotator`), each with an API token, and two empty projects.
#[derive(Debug)]
pub struct LabelerSetup {
    pub database_url: String,
    pub admin_token: String,
    pub annotator_token: String,
    /// Ids (as printed by `labeler project create`) of the two projects.
    pub sft_project: String,
    pub preference_project: String,
}

impl LabelerSetup {
    /// Makes the database, the accounts, their tokens, an SFT project named `sft` and a
    /// preference project named `preference`.
    pub fn new(sft: &str, preference: &str) -> Self {
        let database_url = create_database();
        let env = [
            ("DATABASE_URL", database_url.as_str()),
            ("LABELER_PASSWORD", "jielong end-to-end password"),
        ];
        let labeler = |args: &[&str]| ok(run_bin("labeler", args, &env));
        labeler(&["user", "add", "lead", "--role", "admin"]);
        labeler(&["user", "add", "annotator"]);
        let admin_token = labeler(&["token", "create", "lead"]).trim().to_string();
        let annotator_token = labeler(&["token", "create", "annotator"])
            .trim()
            .to_string();
        let sft_project = project_id(&labeler(&["project", "create", sft, "--kind", "sft"]));
        let preference_project = project_id(&labeler(&[
            "project",
            "create",
            preference,
            "--kind",
            "preference",
        ]));
        Self {
            database_url,
            admin_token,
            annotator_token,
            sft_project,
            preference_project,
        }
    }

    /// Runs the `labeler` CLI against this database; requires success, returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        ok(run_bin(
            "labeler",
            args,
            &[("DATABASE_URL", self.database_url.as_str())],
        ))
    }
}
