//! What a tag, its `class`/`id` and its microdata say about an element before any text is
//! counted: boilerplate containers (navigation, sidebars, comments, related links, share
//! bars), main-content containers (`<article>`, `<main>`, `itemprop="articleBody"`,
//! schema.org Article types, the class names CMSs give article bodies), and a class weight
//! for the scorer.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

/// How an element's hints classify it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    /// Added to a candidate's score (readability's ±25).
    pub class_weight: i16,
    /// Marks main content: `<article>`, `<main>`, `role=main`, `itemprop=articleBody`, ...
    pub main: bool,
    /// Never main content by its tag or role: nav, aside, footer, dialogs.
    pub boilerplate_tag: bool,
    /// Its class or id names boilerplate (comments, sidebar, related, share, ...) and nothing
    /// that names content.
    pub boilerplate_class: bool,
    /// Of those, a comment section: excluded even when other class names are distrusted.
    pub comments: bool,
}

/// Substrings of class/id that name boilerplate: the container is left out of the candidates
/// (unless a content word is there too).
const UNLIKELY: &[&str] = &[
    "comment",
    "disqus",
    "footer",
    "sidebar",
    "side-bar",
    "related",
    "social",
    "sponsor",
    "banner",
    "breadcrumb",
    "cookie",
    "newsletter",
    "subscribe",
    "popup",
    "modal",
    "masthead",
    "navbar",
    "navigation",
    "menu",
    "outbrain",
    "taboola",
    "shoutbox",
    "skyscraper",
    "pagination",
    "pager",
    "gdpr",
    "consent",
    "replies",
    "respond",
    "rss",
    "agegate",
    "ad-break",
    "community",
    "legends",
    "tagcloud",
    "remark",
    "supplemental",
];

/// Substrings of class/id that lower a candidate's score without excluding it.
const NEGATIVE: &[&str] = &[
    "share",
    "sharing",
    "promo",
    "widget",
    "recommend",
    "trending",
    "popular",
    "signup",
    "login",
    "toolbar",
    "author-bio",
    "more-stories",
    "read-more",
    "readmore",
    "jump-to",
    "skip-link",
    "hidden",
    "print-only",
    "copyright",
    "footnote",
    "advert",
    "byline",
];

/// Substrings of class/id that name content.
const POSITIVE: &[&str] = &[
    "article", "content", "entry", "post", "story", "body", "main", "text", "blog", "hentry",
    "prose", "column", "page",
];

/// Class/id words (whole tokens) that name boilerplate but are too short to match as
/// substrings ("nav" is in "canvas", "ad" in "header").
const UNLIKELY_WORDS: &[&str] = &["nav", "ad", "ads", "header", "foot"];
/// Whole words that lower the score only.
const NEGATIVE_WORDS: &[&str] = &["meta", "tools", "tags", "tag", "share"];

/// Class/id substrings of the article body in common CMSs.
const MAIN_CLASS: &[&str] = &[
    "article-body",
    "articlebody",
    "article-content",
    "article__body",
    "article-text",
    "post-content",
    "post-body",
    "entry-content",
    "story-body",
    "storybody",
    "story-content",
    "main-content",
    "maincontent",
    "rich-text",
    "articlecontent",
    "post_content",
    "article_content",
    "content-body",
    "news-content",
    "newstext",
];

static UNLIKELY_AC: LazyLock<AhoCorasick> = LazyLock::new(|| automaton(UNLIKELY));
static NEGATIVE_AC: LazyLock<AhoCorasick> = LazyLock::new(|| automaton(NEGATIVE));
static POSITIVE_AC: LazyLock<AhoCorasick> = LazyLock::new(|| automaton(POSITIVE));
static RESCUE_AC: LazyLock<AhoCorasick> =
    LazyLock::new(|| automaton(&["article", "body", "column", "content", "main"]));
static COMMENTS_AC: LazyLock<AhoCorasick> =
    LazyLock::new(|| automaton(&["comment", "disqus", "replies", "respond"]));
static MAIN_AC: LazyLock<AhoCorasick> = LazyLock::new(|| automaton(MAIN_CLASS));

fn automaton(patterns: &[&str]) -> AhoCorasick {
    AhoCorasick::new(patterns).unwrap_or_else(|e| panic!("static patterns: {e}"))
}

/// The attributes the hints read, raw (entities are irrelevant to them).
#[derive(Debug, Default, Clone, Copy)]
pub struct HintAttrs<'a> {
    pub class: &'a str,
    pub id: &'a str,
    pub role: &'a str,
    pub itemprop: &'a str,
    pub itemtype: &'a str,
}

/// Classifies an element from its lower-case tag name and attributes.
pub fn classify(tag: &str, attrs: &HintAttrs<'_>) -> Hints {
    let mut hints = Hints::default();
    let role = attrs.role.to_ascii_lowercase();
    hints.boilerplate_tag = matches!(tag, "nav" | "aside" | "footer" | "dialog" | "menu")
        || matches!(
            role.as_str(),
            "navigation"
                | "complementary"
                | "contentinfo"
                | "banner"
                | "dialog"
                | "alertdialog"
                | "menu"
                | "menubar"
                | "search"
        );
    let itemprop = attrs.itemprop.to_ascii_lowercase();
    let itemtype = attrs.itemtype.to_ascii_lowercase();
    hints.main = matches!(tag, "article" | "main")
        || role == "main"
        || itemprop.contains("articlebody")
        || (itemtype.contains("schema.org")
            && (itemtype.ends_with("article") || itemtype.ends_with("blogposting")));
    if attrs.class.is_empty() && attrs.id.is_empty() {
        if hints.main {
            hints.class_weight = 25;
        }
        return hints;
    }
    let names = format!("{} {}", attrs.class, attrs.id).to_ascii_lowercase();
    if MAIN_AC.is_match(&names) {
        hints.main = true;
    }
    let has_word = |list: &[&str]| {
        names
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| list.contains(&w))
    };
    let unlikely = UNLIKELY_AC.is_match(&names) || has_word(UNLIKELY_WORDS);
    let negative = unlikely || NEGATIVE_AC.is_match(&names) || has_word(NEGATIVE_WORDS);
    let positive = POSITIVE_AC.is_match(&names);
    if negative {
        hints.class_weight -= 25;
    }
    if positive || hints.main {
        hints.class_weight += 25;
    }
    // Only the strongest content words save a boilerplate name ("relatedposts" is no post).
    hints.boilerplate_class = unlikely && !RESCUE_AC.is_match(&names) && !hints.main;
    hints.comments = hints.boilerplate_class && COMMENTS_AC.is_match(&names);
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(tag: &str, class: &str) -> Hints {
        classify(
            tag,
            &HintAttrs {
                class,
                ..HintAttrs::default()
            },
        )
    }

    #[test]
    fn classes_and_tags() {
        assert!(class("div", "comments-area").boilerplate_class);
        assert!(class("div", "comments-area").comments);
        assert!(!class("div", "sidebar").comments);
        assert!(class("div", "site-nav").boilerplate_class);
        assert!(!class("div", "canvas-wrap").boilerplate_class);
        assert!(!class("div", "post-content comments-enabled").boilerplate_class);
        assert!(class("div", "entry-content").main);
        assert!(class("aside", "").boilerplate_tag);
        assert!(class("article", "").main);
        let schema = HintAttrs {
            itemtype: "https://schema.org/NewsArticle",
            ..HintAttrs::default()
        };
        assert!(classify("div", &schema).main);
    }
}
