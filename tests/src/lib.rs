//! Helpers for the end-to-end tests: locating the workspace's binaries and running them.

use std::path::PathBuf;
use std::process::{Command, Output};

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
