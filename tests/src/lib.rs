//! Helpers for the end-to-end tests on top of the shared fixtures in `testkit`: blocking JSON
//! calls to a running labeler and a labeler prepared through its CLI as a lead would.

use serde_json::Value;
pub use testkit::db::TestDatabase;
pub use testkit::labeler::Server;
pub use testkit::process::{binary, fails, ok, run as run_bin, workspace_root};

/// `labeler serve` (the workspace's binary) on `database_url`, port 0, killed on drop.
pub fn serve(database_url: &str) -> Server {
    testkit::labeler::serve(&binary("labeler"), database_url, &[])
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
        let database_url = TestDatabase::create_blocking().url;
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
