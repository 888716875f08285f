//! The project venv's Python (made by `scripts/setup`: torch, transformers, pyarrow, polars),
//! for tests that check our files open in the tools users know.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// `JIELONG_PYTHON`, else `$JIELONG_CACHE/venv/bin/python` (default cache
/// `~/.cache/jielong`); panics with what to run when it is missing.
pub fn venv_python() -> PathBuf {
    let python = std::env::var_os("JIELONG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("JIELONG_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/jielong")
                });
            cache.join("venv/bin/python")
        });
    assert!(
        python.exists(),
        "{} not found: run `scripts/setup` (or set JIELONG_PYTHON to a python with the packages of scripts/requirements.txt)",
        python.display()
    );
    python
}

/// Runs `script` (`python -c`) with `args`; requires success and returns stdout.
pub fn run_python<S: AsRef<OsStr>>(script: &str, args: &[S]) -> String {
    let out = Command::new(venv_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python printed UTF-8")
}
