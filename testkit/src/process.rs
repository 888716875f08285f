//! The workspace's own binaries, as the tests run them: found next to the test executable in
//! the cargo target directory, started from the workspace root.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace root (holds `configs/`, `migrations/`, `data/`). Resolved at run time from
/// the variable cargo sets for test runs, not baked in with `env!`: the cargo target dir is
/// shared between clones, and a build reused from a clone at another path must not point
/// there. Every member sits one level below the root.
pub fn workspace_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .and_then(|dir| dir.parent().map(PathBuf::from))
        .expect("CARGO_MANIFEST_DIR (set by cargo when it runs tests)")
}

/// Path of a workspace binary built next to the running test (`target/<profile>/NAME`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/TEST-HASH (or examples/NAME) -> target/<profile>/NAME
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

/// A command for workspace binary `name`, run from the workspace root with quiet, uncoloured
/// logs and without the caller's labeler credentials leaking in.
fn command(name: &str) -> Command {
    let mut command = Command::new(binary(name));
    command
        .current_dir(workspace_root())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("LABELER_TOKEN")
        .env_remove("LABELER_URL");
    command
}

/// Runs workspace binary `name` with `args` and extra environment `env`; returns its output.
pub fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = command(name);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// Starts workspace binary `name` with `args` and extra environment `env`, its output piped,
/// without waiting (several processes of one job).
pub fn spawn(name: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut command = command(name);
    command
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"))
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
