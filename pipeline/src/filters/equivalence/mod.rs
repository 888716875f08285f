//! The Gopher filters give the same verdicts (scores, exact to the bit, and drop reasons) as
//! the code they replaced, kept in `reference.rs`, on many generated texts: repetitive,
//! English-like, Chinese, mixed scripts, blank and space-only lines, long words.

mod reference;

use super::ngrams::Vocabulary;
use super::{Analysis, GopherQualityOptions, GopherRepetitionOptions};
use crate::test_rng::TestRng as Rng;
use reference::{OldQuality, OldRepetition};

const ENGLISH: &[&str] = &[
    "the",
    "The",
    "THE",
    "be",
    "to",
    "of",
    "and",
    "that",
    "have",
    "with",
    "river",
    "bridge",
    "museum",
    "EXTRAORDINARILY",
    "BRIDGE",
    "Museum.",
    "RiVeR",
    "@",
    "[",
    "`",
    "{",
    "ancient",
    "traveller",
    "library",
    "a",
    "I",
    "x",
    "extraordinarily",
    "internationalization",
    "#",
    "...",
    "…",
    "--",
    "*",
    "•",
    "42",
    "3.14",
    "e-mail",
    "don't",
    "(see)",
    "end.",
    "why?",
];
const CHINESE: &[&str] = &[
    "的", "年", "在", "月", "是", "和", "日", "了", "中国", "北京", "大学", "我们", "经济", "发展",
    "，", "。", "！", "？", "·", "1949", "ABC", "为", "人民", "……",
];
const MIXED: &[&str] = &[
    "Straße",
    "ΣΟΦΊΑ",
    "σοφία",
    "Éte",
    "ÉTÉ",
    "naïve",
    "кот",
    "Кот",
    "日本語",
    "٣٤",
    "①",
    "\u{1}",
    "\u{7f}",
    "ǅ",
    "İ",
    "K",
    "—",
    "«»",
    "™",
    "x\u{300}",
    "Ｔｈｅ",
    "the",
    "of",
    "and",
];
const SEPARATORS: &[&str] = &[
    " ", " ", " ", " ", " ", "  ", "\t", "\n", "\n", "\n\n", "\n \n", "\r\n", "\n\n\n", "\u{a0}",
    "\u{3000}", "\u{2028}", " \n", "\n  ",
];

/// Text of `words` words from `vocabulary`, with repeated runs, lines and paragraphs.
fn text(rng: &mut Rng, vocabulary: &[&str], words: usize, separators: &[&str]) -> String {
    let mut out = String::new();
    let mut produced: Vec<String> = Vec::new();
    while produced.len() < words {
        match rng.below(10) {
            // Repeat an earlier run of words (n-grams, lines, paragraphs occur again).
            0 | 1 if produced.len() > 4 => {
                let start = rng.below(produced.len());
                let len = 1 + rng.below((produced.len() - start).min(25));
                let run: Vec<String> = produced[start..start + len].to_vec();
                for word in run {
                    out.push_str(&word);
                    out.push_str(rng.pick(separators));
                    produced.push(word);
                }
            }
            2 if rng.below(20) == 0 => {
                // A long word.
                let word = rng.pick(vocabulary).repeat(1 + rng.below(400));
                out.push_str(&word);
                out.push(' ');
                produced.push(word);
            }
            _ => {
                let word = rng.pick(vocabulary).to_string();
                out.push_str(&word);
                out.push_str(rng.pick(separators));
                produced.push(word);
            }
        }
    }
    out
}

fn repetition_options() -> Vec<GopherRepetitionOptions> {
    vec![
        GopherRepetitionOptions::default(),
        GopherRepetitionOptions::chinese(),
        // Sizes out of order, repeated, zero, one and beyond the longest n-gram.
        GopherRepetitionOptions {
            top_n_grams: vec![(3, 0.1), (1, 0.3), (0, 0.1), (2, 0.05), (3, 0.2), (40, 0.0)],
            dup_n_grams: vec![(12, 0.01), (1, 0.2), (2, 0.1), (0, 0.0), (7, 0.0), (2, 0.9)],
            dup_para_char_frac: -1.0,
            ..GopherRepetitionOptions::default()
        },
        GopherRepetitionOptions {
            top_n_grams: vec![],
            dup_n_grams: vec![(3, 0.0)],
            ..GopherRepetitionOptions::default()
        },
    ]
}

fn quality_options() -> Vec<GopherQualityOptions> {
    vec![
        GopherQualityOptions::default(),
        GopherQualityOptions::chinese(),
        GopherQualityOptions {
            stop_words: [
                "a",
                "river",
                "extraordinarily",
                "Extraordinarily",
                "bridge",
                "don't",
                "@",
                "museum.",
                "The",
                "straße",
                "σοφία",
                "кот",
                "été",
                "ǆ",
                "i̇",
                "k",
                "ｔｈｅ",
                "的",
            ]
            .map(String::from)
            .to_vec(),
            min_doc_words: 3,
            ..GopherQualityOptions::default()
        },
    ]
}

/// Compares the new and old verdicts of every option set on `text`, both word splits.
fn check(text: &str) {
    for chinese in [false, true] {
        let doc = Analysis::new(text, chinese);
        for options in repetition_options() {
            assert_eq!(
                options.apply(&doc),
                OldRepetition(&options).apply(&doc),
                "repetition, chinese {chinese}, {options:?}, text {text:?}"
            );
        }
        for options in quality_options() {
            assert_eq!(
                options.apply(&doc),
                OldQuality(&options).apply(&doc),
                "quality, chinese {chinese}, {options:?}, text {text:?}"
            );
        }
    }
}

#[test]
fn gopher_verdicts_equal_the_reference_on_generated_texts() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let plain: &[&str] = &[" ", " ", " ", "\n"];
    let mut drops = 0;
    for round in 0..300 {
        let words = [0, 1, 2, 5, 12, 60, 200, 700][round % 8];
        let (vocabulary, separators): (&[&str], &[&str]) = match round % 5 {
            0 => (&ENGLISH[..4], plain),
            1 => (ENGLISH, SEPARATORS),
            2 => (CHINESE, SEPARATORS),
            3 => (MIXED, SEPARATORS),
            _ => (&[ENGLISH, CHINESE, MIXED].concat(), plain),
        };
        let text = text(&mut rng, vocabulary, words, separators);
        check(&text);
        let doc = Analysis::new(&text, false);
        drops += usize::from(
            GopherRepetitionOptions::default()
                .apply(&doc)
                .drop
                .is_some(),
        );
    }
    // The texts reach both outcomes of the repetition filter.
    assert!((20..280).contains(&drops), "{drops} of 300 dropped");
}

#[test]
fn gopher_verdicts_equal_the_reference_on_edge_texts() {
    let texts = [
        String::new(),
        " \n \n\n\t".into(),
        "word".into(),
        "a a a a a a a a a a a a a a a a a a a a a a".into(),
        "a b a b a b a b a b a b a b a b a b a b a b".into(),
        "one two\none two\n\none two\n\none two".into(),
        // Equal paragraphs around blank and space-only lines, CRLF and trailing spaces.
        "p q r.\r\n  \n\np q r.  \n\n\n p q r.\n\n\u{a0}p q r.".into(),
        // Ties between the most frequent n-grams: the one whose words sort first counts.
        "zz yy zz yy b aaaa b aaaa c".into(),
        "的的的的 年年 的的的的 年年 的的的的".into(),
        "x".repeat(5000),
        format!("{} {}", "long".repeat(300), "long".repeat(300)),
        "\u{1} \u{2} \u{1} \u{2} ### ... … #".into(),
    ];
    for text in &texts {
        check(text);
    }
}

#[test]
fn vocabulary_ids_are_equal_exactly_for_equal_words() {
    let mut rng = Rng::new(7);
    let pool: Vec<String> = (0..400)
        .map(|i| {
            let base = [ENGLISH, CHINESE, MIXED].concat();
            rng.pick(&base).repeat(1 + i % 13)
        })
        .collect();
    let words: Vec<&str> = (0..5000)
        .map(|_| pool[rng.below(pool.len())].as_str())
        .collect();
    let vocabulary = Vocabulary::new(&words);
    for (i, &word) in words.iter().enumerate() {
        let id = vocabulary.ids[i] as usize;
        assert_eq!(words[vocabulary.firsts[id] as usize], word);
        assert!(vocabulary.firsts[id] as usize <= i);
    }
    let mut counts = vec![0u32; vocabulary.firsts.len()];
    vocabulary
        .ids
        .iter()
        .for_each(|&id| counts[id as usize] += 1);
    assert_eq!(counts, vocabulary.counts);
    let distinct: std::collections::HashSet<&str> = words.iter().copied().collect();
    assert_eq!(distinct.len(), vocabulary.firsts.len());
}

#[test]
fn symbol_count_equals_the_three_searches() {
    let mut rng = Rng::new(11);
    let pieces = [
        ".",
        ".",
        ".",
        "#",
        "…",
        "Ц",
        "a",
        " ",
        "日",
        "\u{e2}\u{80}",
        "ⅆ",
    ];
    for _ in 0..3000 {
        let text: String = (0..rng.below(40))
            .map(|_| pieces[rng.below(pieces.len())])
            .collect();
        let expected =
            text.matches('#').count() + text.matches("...").count() + text.matches('…').count();
        assert_eq!(super::gopher::symbol_count(&text), expected, "{text:?}");
    }
}
