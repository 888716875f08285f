//! `labeler serve` as a child process on a port the OS picks, for tests that talk to it over
//! HTTP the way the trainer and annotators do.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::workspace_root;

/// A running `labeler serve`, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, as the server logged it.
    pub address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `labeler serve` (`binary`: the labeler executable) on `database_url`, port 0, and
/// waits up to 60 s for the address it logs; `env` adds variables (settings overrides).
pub fn serve(binary: &Path, database_url: &str, env: &[(&str, &str)]) -> Server {
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .current_dir(workspace_root())
        .env("DATABASE_URL", database_url)
        .env("LABELER_PORT", "0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("labeler serve");
    let stdout = child.stdout.take().expect("stdout");
    let started = Instant::now();
    let mut address = None;
    let mut lines = BufReader::new(stdout).lines();
    // The server logs its address; read it rather than guessing a free port.
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
