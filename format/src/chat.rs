//! The chat template, defined once. `ChatTemplate::render` turns a conversation into token
//! ids and the loss mask in one pass; `CHAT_TEMPLATE_JINJA` is the same template for Hugging
//! Face `tokenizer_config.json`.
//!
//! Layout: `<|role|>content<|end|>` per turn, nothing between turns. Every role marker and
//! `<|end|>` is a special token, so the text between two of them is exactly one message's
//! content. Hugging Face tokenizers split on special tokens before encoding, so encoding the
//! rendered string gives the same ids as encoding each content on its own, which is what
//! makes the piecewise rendering here and `apply_chat_template` agree.
//!
//! A tokenizer with the `bos` special token (`<|bos|>`) starts every rendered conversation
//! with it, as every pretraining document starts: an SFT example, a preference prompt and a
//! generation prompt all begin the way the model saw documents begin.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{FormatError, Result};

/// Special tokens every jielong tokenizer carries: (name in the manifest, text). A trained
/// tokenizer gives them ids 0..=5 in this order; `bos` came last so that the ids of the first
/// five are those of tokenizers trained before it (which lack `bos`: see [`BOS_TOKEN`]).
pub const SPECIAL_TOKENS: [(&str, &str); 6] = [
    ("eos", "<|endoftext|>"),
    ("system", "<|system|>"),
    ("user", "<|user|>"),
    ("assistant", "<|assistant|>"),
    ("end_of_turn", "<|end|>"),
    ("bos", BOS_TOKEN),
];

/// The beginning-of-sequence token. When a dataset's tokenizer has it, every row starts with
/// it (pretraining documents, chat examples, preference and unpaired prompts) and generation
/// prepends it to the prompt; a tokenizer without it (trained before it existed) means no
/// BOS anywhere.
pub const BOS_TOKEN: &str = "<|bos|>";

/// The template as Jinja, for `tokenizer_config.json`'s `chat_template`, for a tokenizer with
/// a BOS token (`bos`) or without one. With one it starts with `{{ bos_token }}`, so
/// `apply_chat_template` yields what [`ChatTemplate::render`] does.
pub fn chat_template_jinja(bos: bool) -> String {
    let start = if bos { "{{- bos_token -}}" } else { "" };
    format!(
        "{start}{{%- for message in messages -%}}\
{{{{- '<|' + message['role'] + '|>' + message['content'] + '<|end|>' -}}}}\
{{%- endfor -%}}\
{{%- if add_generation_prompt -%}}{{{{- '<|assistant|>' -}}}}{{%- endif -%}}"
    )
}

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation, in the `{"role", "content"}` shape of the exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// Plain text to ids, without adding special tokens. Implemented by the pipeline's and the
/// trainer's tokenizer wrappers; `format` stays free of the tokenizers crate.
pub trait TextEncoder {
    fn encode(&self, text: &str) -> std::result::Result<Vec<u32>, String>;
}

/// Ids of a conversation and which of them are trained on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderedChat {
    pub input_ids: Vec<u32>,
    /// 1 on assistant content tokens and the assistant's `<|end|>`; 0 elsewhere.
    pub loss_mask: Vec<u8>,
}

impl RenderedChat {
    fn push(&mut self, ids: &[u32], mask: u8) {
        self.input_ids.extend_from_slice(ids);
        self.loss_mask.extend(std::iter::repeat_n(mask, ids.len()));
    }
}

/// The chat template bound to one tokenizer's special-token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    /// Starts every rendering when the tokenizer has one.
    bos: Option<u32>,
    system: u32,
    user: u32,
    assistant: u32,
    end_of_turn: u32,
}

impl ChatTemplate {
    /// Looks up the role markers and `end_of_turn` among a tokenizer's special tokens (as
    /// recorded in a manifest), and `bos` if it is there; names the first one missing.
    pub fn from_special_tokens(special: &BTreeMap<String, u32>) -> Result<Self> {
        let get = |name: &str| {
            special.get(name).copied().ok_or_else(|| {
                FormatError::Chat(format!(
                    "the tokenizer has no `{name}` special token; a chat template needs {}",
                    SPECIAL_TOKENS[1..5]
                        .iter()
                        .map(|(n, t)| format!("{n} ({t})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        };
        Ok(Self {
            bos: special.get("bos").copied(),
            system: get("system")?,
            user: get("user")?,
            assistant: get("assistant")?,
            end_of_turn: get("end_of_turn")?,
        })
    }

    fn marker(&self, role: Role) -> u32 {
        match role {
            Role::System => self.system,
            Role::User => self.user,
            Role::Assistant => self.assistant,
        }
    }

    pub fn end_of_turn(&self) -> u32 {
        self.end_of_turn
    }

    /// The BOS id every rendering starts with, if the tokenizer has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// Renders a training conversation: it must have at least one assistant turn, and a
    /// system turn only first.
    pub fn render(&self, messages: &[Message], encoder: &impl TextEncoder) -> Result<RenderedChat> {
        check_conversation(messages)?;
        if !messages.iter().any(|m| m.role == Role::Assistant) {
            return Err(FormatError::Chat(
                "conversation has no assistant turn: nothing to train on".into(),
            ));
        }
        let mut out = RenderedChat::default();
        out.push(self.bos.as_slice(), 0);
        for (i, message) in messages.iter().enumerate() {
            let content = encode(encoder, &message.content, i)?;
            let trained = u8::from(message.role == Role::Assistant);
            out.push(&[self.marker(message.role)], 0);
            out.push(&content, trained);
            out.push(&[self.end_of_turn], trained);
        }
        Ok(out)
    }

    /// Renders a prompt for generation: BOS (if any), the conversation, then `<|assistant|>`.
    pub fn render_prompt(
        &self,
        messages: &[Message],
        encoder: &impl TextEncoder,
    ) -> Result<Vec<u32>> {
        check_conversation(messages)?;
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        for (i, message) in messages.iter().enumerate() {
            ids.push(self.marker(message.role));
            ids.extend(encode(encoder, &message.content, i)?);
            ids.push(self.end_of_turn);
        }
        ids.push(self.assistant);
        Ok(ids)
    }

    /// The ids of an assistant answer that follows [`ChatTemplate::render_prompt`]: content
    /// then `<|end|>`.
    pub fn render_completion(&self, content: &str, encoder: &impl TextEncoder) -> Result<Vec<u32>> {
        let mut ids = encode(encoder, content, 0)?;
        ids.push(self.end_of_turn);
        Ok(ids)
    }
}

/// The rendered text, exactly what [`chat_template_jinja`] produces given `bos_token` (the
/// empty string for a template without BOS).
pub fn render_text(messages: &[Message], add_generation_prompt: bool, bos_token: &str) -> String {
    let mut text = bos_token.to_string();
    for m in messages {
        text.push_str("<|");
        text.push_str(m.role.as_str());
        text.push_str("|>");
        text.push_str(&m.content);
        text.push_str("<|end|>");
    }
    if add_generation_prompt {
        text.push_str("<|assistant|>");
    }
    text
}

fn check_conversation(messages: &[Message]) -> Result<()> {
    if messages.is_empty() {
        return Err(FormatError::Chat("conversation has no messages".into()));
    }
    if let Some(i) = messages.iter().skip(1).position(|m| m.role == Role::System) {
        return Err(FormatError::Chat(format!(
            "message {}: a system message may only come first",
            i + 1
        )));
    }
    for (i, m) in messages.iter().enumerate() {
        if let Some((_, text)) = SPECIAL_TOKENS.iter().find(|(_, t)| m.content.contains(t)) {
            return Err(FormatError::Chat(format!(
                "message {i} ({}): content contains the special token {text}, which would break the template",
                m.role.as_str()
            )));
        }
    }
    Ok(())
}

fn encode(encoder: &impl TextEncoder, text: &str, index: usize) -> Result<Vec<u32>> {
    encoder
        .encode(text)
        .map_err(|e| FormatError::Chat(format!("message {index}: tokenizer failed: {e}")))
}
