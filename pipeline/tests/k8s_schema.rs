//! Reading back `pipeline launch k8s`'s manifests without a cluster: [`parse_yaml`] (PyYAML,
//! an independent parser) and [`validate`], the real Kubernetes OpenAPI schemas applied
//! offline by `kubernetes-validate --strict` (PyPI `kubernetes-validate`, which ships the
//! schemas of each Kubernetes release; scripts/setup installs it into the project venv).
//! `kubectl apply --dry-run=client` would need an API server. The manifests are checked for
//! the oldest release the launcher supports, 1.29 (`backoffLimitPerIndex` beta, on by
//! default; 1.27's schema rejects the field), and the newest the package ships, 1.37.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pipeline::launch::k8s::{K8sLaunch, manifests, write};
use serde_json::{Value, json};

/// The Kubernetes releases every manifest must be valid for.
pub const KUBERNETES_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

/// The project venv (`JIELONG_VENV`, set by scripts/env.sh).
fn venv_bin(tool: &str) -> Option<PathBuf> {
    std::env::var("JIELONG_VENV")
        .ok()
        .map(|v| Path::new(&v).join("bin").join(tool))
}

/// Every document of a YAML text, read by PyYAML (the project venv's, else python3's).
pub fn parse_yaml(text: &str) -> Vec<Value> {
    let python = venv_bin("python").unwrap_or_else(|| "python3".into());
    let mut child = Command::new(python)
        .args([
            "-c",
            "import sys, json, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python (PyYAML)");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), text.as_bytes())
        .expect("write yaml");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "PyYAML rejected:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from python")
}

/// Checks every document of `files` with `kubernetes-validate --strict` for each of
/// [`KUBERNETES_VERSIONS`]: `Err` with its output unless it exits 0 and says "passed" for
/// every document and version (a kind it has no schema for is only a warning there, exit 0:
/// here it fails too).
pub fn validate(files: &[PathBuf]) -> Result<(), String> {
    let Some(tool) = venv_bin("kubernetes-validate").filter(|t| t.exists()) else {
        panic!(
            "kubernetes-validate is not in the project venv ($JIELONG_VENV/bin): run scripts/setup (scripts/requirements.txt)"
        );
    };
    let documents: usize = files
        .iter()
        .map(|f| parse_yaml(&std::fs::read_to_string(f).expect("read manifest")).len())
        .sum();
    let mut command = Command::new(&tool);
    command.arg("--strict");
    for version in KUBERNETES_VERSIONS {
        command.args(["--kubernetes-version", version]);
    }
    let out = command
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = text
        .lines()
        .filter(|l| l.starts_with("INFO ") && l.contains(" passed for resource "))
        .count();
    let expected = documents * KUBERNETES_VERSIONS.len();
    if out.status.success() && passed == expected && text.lines().count() == expected {
        Ok(())
    } else {
        Err(format!(
            "kubernetes-validate ({}, {passed} of {expected} passed):\n{text}",
            out.status
        ))
    }
}

/// Writes `manifests` into `dir` and validates them.
pub fn validate_values(
    dir: &Path,
    manifests: &[pipeline::launch::k8s::Manifest],
) -> Result<(), String> {
    validate(&write(manifests, dir).expect("write manifests"))
}

/// A way to break a manifest: what it is, the change, what the validation must say.
type Break = (&'static str, fn(&mut Value), &'static str);

#[test]
fn kubernetes_validate_passes_the_launchers_manifests_and_rejects_broken_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        "[input]\npaths = [\"s3://b/in/*.jsonl\"]\n\n[output]\ndir = \"s3://b/run\"\n\n[tokenize]\ntokenizer = \"s3://b/run/tokenizer.json\"\noutput = \"s3://b/dataset\"\n\n[tokenize.train]\nvocab_size = 400\n",
    )
    .expect("write config");
    let launch = K8sLaunch {
        config,
        tasks: 4,
        max_parallel: 2,
        image: "registry.example/jielong:1".into(),
        namespace: "data".into(),
        secret: "jielong-s3".into(),
        cpus: 2,
        memory: "4Gi".into(),
        retries: 3,
        max_failed: None,
        wait_timeout: 600,
    };
    let good = manifests(&launch).expect("manifests");
    let stages: Vec<&str> = good.iter().map(|m| m.file.as_str()).collect();
    assert_eq!(
        stages,
        [
            "00-config.yaml",
            "01-clean.yaml",
            "02-pairs.yaml",
            "03-ship.yaml",
            "04-check.yaml",
            "05-components.yaml",
            "06-survivors.yaml",
            "07-tokenizer.yaml",
            "08-tokenize.yaml",
            "09-finish.yaml"
        ]
    );
    validate_values(&dir.path().join("good"), &good).unwrap_or_else(|e| panic!("{e}"));

    // Each break is one the schemas catch and a YAML reader does not: the validation
    // must name it, so it cannot pass by not looking.
    let tokenize = 8;
    let breaks: [Break; 4] = [
        (
            "unknown Job field",
            |job| job["spec"]["backoffLimitPerIndexes"] = json!(3),
            "'backoffLimitPerIndexes' was unexpected",
        ),
        (
            "unknown container field",
            |job| job["spec"]["template"]["spec"]["containers"][0]["cmd"] = json!(["x"]),
            "'cmd' was unexpected",
        ),
        (
            "wrong type",
            |job| job["spec"]["completions"] = json!("four"),
            "is not of type 'integer'",
        ),
        (
            "unknown kind",
            |job| job["kind"] = json!("IndexedJob"),
            "Couldn't find schema for kind IndexedJob",
        ),
    ];
    for (what, break_it, says) in breaks {
        let mut broken = good.clone();
        break_it(&mut broken[tokenize].value);
        let err =
            validate_values(&dir.path().join(what.replace(' ', "-")), &broken).expect_err(what);
        assert!(err.contains(says), "{what}: {err}");
        assert!(err.contains("08-tokenize.yaml"), "{what}: {err}");
    }
}
