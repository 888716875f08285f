//! Checked domain types. Handlers and stores only ever see values that passed `parse`, so a
//! bad name, role, conversation or verdict is rejected once, at the edge, with a message.

mod account;
mod conversation;
mod project;
mod ranking;
mod rating;
mod verdict;

pub use account::{Password, Role, Username};
pub use conversation::{
    Candidate, Conversation, Message, MessageRole, check_content, check_json_text, check_text,
};
pub use project::{Overlap, ProjectKind, ProjectName};
pub use ranking::{MAX_RANKED, MIN_RANKED, RankedPair, Ranking};
pub use rating::{Aspect, Aspects, MAX_ASPECTS, Rating};
pub use verdict::{Choice, Strength, Verdict};
