//! Each filter on hand-checked examples, English and Chinese; normalization, language id and
//! PII on small cases.

use pipeline::filters::{
    Analysis, C4Options, FilterOptions, FineWebOptions, GopherQualityOptions,
    GopherRepetitionOptions,
};
use pipeline::langid;
use pipeline::normalize::{NormalizeOptions, UnicodeForm, normalize};
use pipeline::pii::{PiiOptions, redact};

use crate::helpers::{good_chinese, good_english};

fn drops(filter: &str, text: &str, chinese: bool) -> Option<String> {
    let (_, outcomes) = FilterOptions::default().run(text.to_string(), chinese);
    outcomes
        .into_iter()
        .find(|o| o.filter == filter)
        .and_then(|o| o.verdict.drop)
}

#[test]
fn good_prose_passes_every_filter_in_both_languages() {
    let (_, outcomes) = FilterOptions::default().run(good_english(1), false);
    assert_eq!(outcomes.len(), 4);
    for o in &outcomes {
        assert_eq!(o.verdict.drop, None, "{} dropped good English", o.filter);
    }
    let (_, outcomes) = FilterOptions::default().run(good_chinese(1), true);
    assert_eq!(outcomes.len(), 3, "C4 does not run on Chinese");
    for o in &outcomes {
        assert_eq!(
            o.verdict.drop, None,
            "{} dropped good Chinese: {:?}",
            o.filter, o.verdict
        );
    }
}

#[test]
fn gopher_quality_hand_checked() {
    let options = GopherQualityOptions::default();
    // 7 words: too short.
    let short = "The cat sat on the warm mat.";
    let v = options.apply(&Analysis::new(short, false));
    assert_eq!(v.scores[0], ("gopher_words", 7.0));
    assert!(
        v.drop
            .as_deref()
            .is_some_and(|r| r.contains("7 words < 50")),
        "{v:?}"
    );
    // No stop words at all.
    let no_stop = "Quick brown foxes jump over lazy dogs daily. ".repeat(10);
    let v = options.apply(&Analysis::new(&no_stop, false));
    assert!(
        v.drop.as_deref().is_some_and(|r| r.contains("stop words")),
        "{v:?}"
    );
    // Hashtag spam: symbol/word ratio.
    let tags = "#deal #sale the best of the offers with #free #shipping and #more ".repeat(8);
    let v = options.apply(&Analysis::new(&tags, false));
    assert!(
        v.drop.as_deref().is_some_and(|r| r.contains("symbol/word")),
        "{v:?}"
    );
    // Mostly numbers: too few words with letters.
    let numbers = format!("the {} and the end", "1234 5678 9012 ".repeat(30));
    let v = options.apply(&Analysis::new(&numbers, false));
    assert!(
        v.drop
            .as_deref()
            .is_some_and(|r| r.contains("contain a letter")),
        "{v:?}"
    );
}

#[test]
fn gopher_repetition_hand_checked() {
    let options = GopherRepetitionOptions::default();
    let repeated = "Buy cheap watches online today.\n".repeat(10) + &good_english(2);
    let v = options.apply(&Analysis::new(&repeated, false));
    assert!(v.drop.is_some(), "{v:?}");
    // 4 distinct lines, each twice: 4 of 8 lines are duplicates.
    let lines = "alpha line one\nbeta line two\ngamma line three\ndelta line four\n".repeat(2);
    let v = options.apply(&Analysis::new(&lines, false));
    let frac = v
        .scores
        .iter()
        .find(|(n, _)| *n == "gopher_dup_line_frac")
        .expect("score")
        .1;
    assert!((frac - 0.5).abs() < 1e-9, "{frac}");
    assert!(drops("gopher_repetition", &good_english(3), false).is_none());
    // The same in Chinese, with jieba words.
    let zh = "今天天气很好。\n".repeat(12) + &good_chinese(2);
    assert!(drops("gopher_repetition", &zh, true).is_some());
}

#[test]
fn c4_removes_lines_and_drops_documents() {
    let options = C4Options::default();
    let text = "Home | About | Contact\n\
                This sentence is long enough to stay in the text.\n\
                Please enable javascript to view this page properly.\n\
                We use cookies to improve your experience. Read our privacy policy.\n\
                A claim with a citation marker stays without it.[1]\n\
                Read more";
    let (kept, v) = options.apply(text);
    assert_eq!(
        kept,
        "This sentence is long enough to stay in the text.\nA claim with a citation marker stays without it."
    );
    assert!(
        v.drop
            .as_deref()
            .is_some_and(|r| r.contains("2 sentences < 5")),
        "{v:?}"
    );
    let (_, v) = options.apply(&format!(
        "{}\nLorem ipsum dolor sit amet, consectetur.",
        good_english(1)
    ));
    assert_eq!(v.drop.as_deref(), Some("c4: lorem ipsum"));
    let (_, v) = options.apply(&format!(
        "{}\nfunction f() {{ return 1; }}",
        good_english(1)
    ));
    assert_eq!(v.drop.as_deref(), Some("c4: curly bracket (code)"));
}

#[test]
fn fineweb_rules_hand_checked() {
    let options = FineWebOptions::default();
    // A list of short lines without punctuation.
    let list = (0..40)
        .map(|i| format!("item number {i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let v = options.apply(&Analysis::new(&list, false));
    let reasons = v.drop.clone().expect("dropped");
    assert!(reasons.contains("lines ending in punctuation"), "{reasons}");
    let score = |name: &str| v.scores.iter().find(|(n, _)| *n == name).expect(name).1;
    assert_eq!(score("fineweb_line_punct_ratio"), 0.0);
    assert_eq!(score("fineweb_short_line_ratio"), 1.0);
    // 39 newlines over 120 words.
    assert!((score("fineweb_new_line_ratio") - 39.0 / 120.0).abs() < 1e-9);
    // Chinese: 。！？ count as terminal punctuation.
    let zh = good_chinese(4);
    let v = FineWebOptions::chinese().apply(&Analysis::new(&zh, true));
    assert_eq!(v.drop, None, "{v:?}");
    let zh_list = (0..30)
        .map(|i| format!("第{i}条 新闻 标题"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        FineWebOptions::chinese()
            .apply(&Analysis::new(&zh_list, true))
            .drop
            .is_some()
    );
}

#[test]
fn chinese_gopher_uses_jieba_words_and_chinese_stop_words() {
    let zh = good_chinese(3);
    let analysis = Analysis::new(&zh, true);
    // jieba splits into words, not characters and not whole lines.
    assert!(
        analysis.words.contains(&"公园") || analysis.words.contains(&"博物馆"),
        "{:?}",
        analysis.words
    );
    // Multi-character words, not one token per character.
    assert!(analysis.words.len() * 10 < analysis.text.chars().count() * 7);
    let v = GopherQualityOptions::chinese().apply(&analysis);
    assert_eq!(v.drop, None, "{v:?}");
    let stop = v
        .scores
        .iter()
        .find(|(n, _)| *n == "gopher_stop_words")
        .expect("score")
        .1;
    assert!(stop >= 2.0);
    // The English defaults would reject the same text (average word length < 3).
    assert!(
        GopherQualityOptions::default()
            .apply(&analysis)
            .drop
            .is_some()
    );
}

#[test]
fn normalization_fixes_whitespace_controls_and_forms() {
    let options = NormalizeOptions::default();
    assert_eq!(
        normalize(
            "  Hello\u{00A0}\u{00A0}world\u{200B}!\r\n\r\n\r\n\tNext\u{0007} line  \n\n",
            &options
        ),
        "Hello world!\n\nNext line"
    );
    // NFC composes; NFKC also folds full-width forms.
    assert_eq!(normalize("e\u{0301}", &options), "é");
    let nfkc = NormalizeOptions {
        unicode: UnicodeForm::Nfkc,
        ..options.clone()
    };
    assert_eq!(normalize("ＡＢＣ１２３", &nfkc), "ABC123");
    let t2s = NormalizeOptions {
        traditional_to_simplified: true,
        ..options
    };
    assert_eq!(normalize("這是繁體中文", &t2s), "这是繁体中文");
}

/// Fortunes and terminal logs carry colour codes: the whole sequence goes, not only the ESC
/// (which left `[33m` in the text, the same in every such document, for MinHash to match on).
#[test]
fn normalization_removes_whole_terminal_escape_sequences() {
    let options = NormalizeOptions::default();
    assert_eq!(
        normalize(
            "举杯断绝歌路难。\n\u{1b}[33m    -- 鲍照\u{1b}[32m《拟行路难》\u{1b}[m\u{1b}[1;4;38;5;208mbold\u{1b}[0m",
            &options
        ),
        "举杯断绝歌路难。\n-- 鲍照《拟行路难》bold"
    );
    // OSC (a hyperlink: ESC ] 8 ; ; URL BEL ... ESC ] 8 ; ; ESC \\) and a two-byte sequence.
    assert_eq!(
        normalize(
            "see \u{1b}]8;;https://example.com/文\u{7}the docs\u{1b}]8;;\u{1b}\\ now\u{1b}M.",
            &options
        ),
        "see the docs now."
    );
    // A lone or unfinished ESC drops only itself; the text after it stays.
    assert_eq!(normalize("a\u{1b}b \u{1b}[12", &options), "ab [12");
}

#[test]
fn language_identification_and_keep_list() {
    let options = langid::LangIdOptions::default();
    let en = options.identify(&good_english(1));
    assert_eq!(en.label, "eng");
    assert!(en.score().is_some_and(|s| s > 0.5));
    let zh = options.identify(&good_chinese(1));
    assert_eq!(zh.label, "cmn");
    assert!(zh.guessed_chinese());
    assert_eq!(options.verdict(&en), None);
    let de = options.identify(
        "Der schnelle braune Fuchs springt über den faulen Hund und läuft weiter in den Wald.",
    );
    assert_eq!(de.label, "deu");
    assert!(
        options
            .verdict(&de)
            .is_some_and(|r| r.contains("not in keep list"))
    );
    // Nothing to guess from: undetermined, dropped by the default list, kept by `keep = []`.
    let none = options.identify("1984 2001 3.14159 -- 42");
    assert_eq!(
        (none.label.as_str(), none.guess.as_ref()),
        (langid::UNDETERMINED, None)
    );
    assert!(
        options
            .verdict(&none)
            .is_some_and(|r| r.contains("undetermined"))
    );
    let keep_all = langid::LangIdOptions {
        keep: vec![],
        ..langid::LangIdOptions::default()
    };
    assert_eq!(keep_all.verdict(&none), None);
}

#[test]
fn pii_redaction() {
    let text = "Mail jane.doe@example.com or admin@mail.server.cn from 192.168.1.20; \
                call 13812345678, ID 11010519491231002X, version 1.2.3.4.5 stays.";
    let (out, n) = redact(text, &PiiOptions::default());
    assert_eq!(n, 3);
    assert!(
        out.contains("Mail <EMAIL> or <EMAIL> from <IP_ADDRESS>;"),
        "{out}"
    );
    assert!(
        out.contains("13812345678"),
        "phones only when enabled: {out}"
    );
    let all = PiiOptions {
        cn_mobile: true,
        cn_id_card: true,
        ..PiiOptions::default()
    };
    let (out, n) = redact(text, &all);
    assert_eq!(n, 5, "{out}");
    assert!(out.contains("call <PHONE>, ID <ID_NUMBER>"), "{out}");
    // An 18-digit number with a wrong checksum is not an ID number.
    let (out, _) = redact("order 110105194912310021 shipped", &all);
    assert!(out.contains("110105194912310021"), "{out}");
}
