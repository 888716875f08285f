//! Conversations and candidate answers as they arrive in imports and leave in exports:
//! the `{"role", "content"}` message shape of ARCHITECTURE.md.

use serde::{Deserialize, Serialize};

/// Longest accepted message, in bytes; longer text is almost certainly a broken file.
pub const MAX_CONTENT_BYTES: usize = 200_000;
/// Most turns in one prompt.
pub const MAX_TURNS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: MessageRole,
    pub content: String,
}

/// A prompt: a non-empty conversation whose last turn is the user's, with a system message
/// only at the start. The annotator (or a model) writes the next assistant turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Conversation(Vec<Message>);

impl Conversation {
    pub fn parse(messages: Vec<Message>) -> Result<Self, String> {
        let Some(last) = messages.last() else {
            return Err("prompt has no messages".into());
        };
        if last.role != MessageRole::User {
            return Err("prompt must end with a user message".into());
        }
        if messages.len() > MAX_TURNS {
            return Err(format!(
                "prompt has {} messages; at most {MAX_TURNS}",
                messages.len()
            ));
        }
        for (i, m) in messages.iter().enumerate() {
            if m.role == MessageRole::System && i != 0 {
                return Err(format!("message {i}: a system message may only come first"));
            }
            check_content(&m.content).map_err(|e| format!("message {i}: {e}"))?;
        }
        Ok(Self(messages))
    }

    /// A single user turn.
    pub fn from_user_text(text: String) -> Result<Self, String> {
        Self::parse(vec![Message {
            role: MessageRole::User,
            content: text,
        }])
    }

    pub fn messages(&self) -> &[Message] {
        &self.0
    }
}

pub fn check_content(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("content is empty".into());
    }
    check_text(s)?;
    if s.len() > MAX_CONTENT_BYTES {
        return Err(format!(
            "content is {} bytes; at most {MAX_CONTENT_BYTES}",
            s.len()
        ));
    }
    Ok(())
}

/// PostgreSQL text and jsonb cannot hold U+0000: refuse it at the edge instead of failing in
/// the database.
pub fn check_text(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        Err("text contains a NUL character (U+0000)".into())
    } else {
        Ok(())
    }
}

/// [`check_text`] for every string and key inside a JSON value.
pub fn check_json_text(v: &serde_json::Value) -> Result<(), String> {
    match v {
        serde_json::Value::String(s) => check_text(s),
        serde_json::Value::Array(a) => a.iter().try_for_each(check_json_text),
        serde_json::Value::Object(o) => o.iter().try_for_each(|(k, v)| {
            check_text(k)?;
            check_json_text(v)
        }),
        _ => Ok(()),
    }
}

/// A model's answer to a prompt, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Sampling settings (temperature, top_p, seed, ...), kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Candidate {
    pub fn check(&self) -> Result<(), String> {
        check_content(&self.content)?;
        for s in [&self.model, &self.checkpoint].into_iter().flatten() {
            check_text(s)?;
        }
        if let Some(sampling) = &self.sampling {
            sampling.values().try_for_each(check_json_text)?;
            sampling.keys().try_for_each(|k| check_text(k))?;
        }
        Ok(())
    }
}
