//! A small blocking client for the labeler's JSON API, as the model in the loop uses it: page
//! through a project's prompts, and post items with candidates (comparisons, or single
//! answers to rate). Crates meet only through HTTP, so the request and reply shapes are
//! declared here, not shared with the labeler's code. Every failure says what to change (URL, token, project).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Largest reply body read (a page of long prompts is a few MB).
const MAX_REPLY_BYTES: u64 = 256 << 20;

#[derive(Debug, Error)]
pub enum LabelerError {
    #[error("cannot reach the labeler at {url}: {source} (is `labeler serve` running there?)")]
    Unreachable {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error(
        "the labeler at {url} refused the API token (401): pass an admin's token with --token or LABELER_TOKEN (`labeler token create USER`)"
    )]
    Unauthorized { url: String },
    #[error(
        "the labeler at {url} says 403 Forbidden: {message} (the token's user must be an admin)"
    )]
    Forbidden { url: String, message: String },
    #[error("the labeler at {url} says 404: {message}")]
    NotFound { url: String, message: String },
    #[error("the labeler at {url} rejected the request ({status}): {message}")]
    Rejected {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the labeler at {url} sent a reply that is not what this trainer expects: {message}")]
    BadReply { url: String, message: String },
    #[error(
        "project {id} ({name}) is of kind {kind}; {k} answer(s) per prompt go to {wanted} (`labeler project create NAME --kind {wanted_kind}`)"
    )]
    WrongKind {
        id: i64,
        name: String,
        kind: String,
        k: usize,
        wanted: &'static str,
        wanted_kind: &'static str,
    },
}

/// A project as `GET /api/projects` lists it (the fields used here).
#[derive(Debug, Clone, Deserialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub kind: String,
}

/// One turn of a prompt, as the labeler sends it (the shape of `format::Message`).
pub type Message = format::Message;

/// One prompt to answer: `GET /api/projects/{id}/prompts`, with the text of the item's
/// candidate answers in their stored order (what a pre-label's `winner` indexes).
#[derive(Debug, Clone, Deserialize)]
pub struct PromptRow {
    pub item_id: i64,
    pub external_id: String,
    pub prompt: Vec<Message>,
    #[serde(default)]
    pub candidates: Vec<String>,
}

/// A model's suggested verdict on one item: `label` (rating) or `winner` (preference: the
/// candidate index).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prelabel {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<usize>,
}

#[derive(Debug, Serialize)]
struct PrelabelBody<'a> {
    source: &'a str,
    items: &'a [Prelabel],
}

#[derive(Debug, Deserialize)]
struct PrelabelReply {
    stored: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PromptPage {
    pub prompts: Vec<PromptRow>,
    pub next_after: Option<i64>,
}

/// A candidate answer with its provenance (the labeler's import shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub content: String,
    pub model: String,
    pub checkpoint: String,
    pub sampling: serde_json::Map<String, serde_json::Value>,
}

/// A comparison item: an import row of a preference project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonItem {
    pub id: String,
    pub prompt: Vec<Message>,
    pub candidates: Vec<Candidate>,
    pub meta: serde_json::Map<String, serde_json::Value>,
}

/// The labeler's answer to a candidates post.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PostSummary {
    pub created: usize,
    pub skipped: usize,
    #[serde(default)]
    pub skipped_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CandidatesBody<'a> {
    source: &'a str,
    items: &'a [ComparisonItem],
}

/// The labeler at `base_url`, called with an API token.
pub struct LabelerClient {
    base_url: String,
    token: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for LabelerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("LabelerClient")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl LabelerClient {
    pub fn new(base_url: &str, token: &str, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            // The labeler (actix-web) closes a connection idle for 5 s; ureq would reuse it
            // for up to 15 s and a POST after a long generation then fails with "Peer
            // disconnected" (seen once in CI). Never reuse one idle for 2 s or more.
            .max_idle_age(Duration::from_secs(2))
            .build()
            .into();
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends one request and returns the 2xx body as JSON; any other status becomes the
    /// matching error with the labeler's message.
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, LabelerError> {
        self.send(path, body, false)
    }

    /// [`Self::call`], with PUT instead of POST when `put` and there is a body.
    fn send<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&impl Serialize>,
        put: bool,
    ) -> Result<T, LabelerError> {
        let url = self.url(path);
        let auth = format!("Bearer {}", self.token);
        let sent = match body {
            None => self.agent.get(&url).header("Authorization", &auth).call(),
            Some(body) if put => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .send_json(body),
            Some(body) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_json(body),
        };
        let mut response = sent.map_err(|e| LabelerError::Unreachable {
            url: url.clone(),
            source: Box::new(e),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_BYTES)
            .read_to_string()
            .map_err(|e| LabelerError::BadReply {
                url: url.clone(),
                message: format!("reading the body: {e}"),
            })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| LabelerError::BadReply {
                url,
                message: format!("{e} in {}", excerpt(&text)),
            });
        }
        let message = error_message(&text);
        Err(match status {
            401 => LabelerError::Unauthorized { url },
            403 => LabelerError::Forbidden { url, message },
            404 => LabelerError::NotFound { url, message },
            _ => LabelerError::Rejected {
                url,
                status,
                message,
            },
        })
    }

    /// The project `id`, checked to exist.
    pub fn project(&self, id: i64) -> Result<Project, LabelerError> {
        let projects: Vec<Project> = self.call("/api/projects", None::<&()>)?;
        projects
            .into_iter()
            .find(|p| p.id == id)
            .ok_or_else(|| LabelerError::NotFound {
                url: self.url("/api/projects"),
                message: format!("no project {id}"),
            })
    }

    /// The project `id`, checked to take `k` answers per item: a rating project for one
    /// answer, a preference project for two or more.
    pub fn candidate_project(&self, id: i64, k: usize) -> Result<Project, LabelerError> {
        let project = self.project(id)?;
        let (wanted, wanted_kind) = if k == 1 {
            ("a rating project (one answer to judge)", "rating")
        } else {
            ("a preference project (a comparison)", "preference")
        };
        if project.kind != wanted_kind {
            return Err(LabelerError::WrongKind {
                id,
                name: project.name,
                kind: project.kind,
                k,
                wanted,
                wanted_kind,
            });
        }
        Ok(project)
    }

    /// One page of a project's prompts after the cursor `after` (0: from the start).
    pub fn prompts(
        &self,
        project: i64,
        after: i64,
        limit: u32,
    ) -> Result<PromptPage, LabelerError> {
        self.call(
            &format!("/api/projects/{project}/prompts?after={after}&limit={limit}"),
            None::<&()>,
        )
    }

    /// Every prompt of a project, page by page.
    pub fn all_prompts(&self, project: i64) -> Result<Vec<PromptRow>, LabelerError> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self.prompts(project, after, 1000)?;
            all.extend(page.prompts);
            match page.next_after {
                Some(next) if next > after => after = next,
                _ => return Ok(all),
            }
        }
    }

    /// Posts comparison items; items whose id the project already has are skipped there.
    pub fn post_candidates(
        &self,
        project: i64,
        source: &str,
        items: &[ComparisonItem],
    ) -> Result<PostSummary, LabelerError> {
        self.call(
            &format!("/api/projects/{project}/candidates"),
            Some(&CandidatesBody { source, items }),
        )
    }

    /// Stores a model's suggestions (`PUT /api/projects/{id}/prelabels`, all or none;
    /// replacing earlier ones); returns how many were stored.
    pub fn put_prelabels(
        &self,
        project: i64,
        source: &str,
        items: &[Prelabel],
    ) -> Result<usize, LabelerError> {
        let reply: PrelabelReply = self.send(
            &format!("/api/projects/{project}/prelabels"),
            Some(&PrelabelBody { source, items }),
            true,
        )?;
        Ok(reply.stored)
    }
}

/// The labeler's `{"error", "rows"?}` as one line; any other body as an excerpt.
fn error_message(text: &str) -> String {
    let Ok(body) = serde_json::from_str::<serde_json::Value>(text) else {
        return excerpt(text);
    };
    let mut message = body["error"]
        .as_str()
        .map_or_else(|| excerpt(text), str::to_string);
    if let Some(rows) = body["rows"].as_array() {
        for row in rows.iter().take(5) {
            message.push_str(&format!(
                "; item {}: {}",
                row["line"],
                row["message"].as_str().unwrap_or_default()
            ));
        }
    }
    message
}

fn excerpt(text: &str) -> String {
    let cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        format!("{cut}...")
    } else {
        cut
    }
}
