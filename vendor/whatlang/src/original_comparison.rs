//! jielong: the patched crate against the unpatched crates.io release (dev-dependency
//! `whatlang_original`) through the public API: the same language, script and confidence
//! (bit for bit) on every test text.

use crate::test_texts::hard_texts;
use crate::{Detector, Lang, detect, detect_script};

fn same_info(text: &str, ours: Option<crate::Info>, original: Option<whatlang_original::Info>) {
    let ours = ours.map(|i| {
        (
            i.lang().code(),
            i.script().name().to_string(),
            i.confidence(),
        )
    });
    let original = original.map(|i| {
        let (lang, script) = (i.lang().code(), i.script().name().to_string());
        (lang, script, i.confidence())
    });
    match (ours, original) {
        (None, None) => {}
        (Some((lang, script, confidence)), Some((lang0, script0, confidence0))) => {
            assert_eq!((lang, &script), (lang0, &script0), "{text}");
            assert_eq!(confidence.to_bits(), confidence0.to_bits(), "{text}");
        }
        (ours, original) => panic!("{ours:?} vs {original:?} for {text}"),
    }
}

#[test]
fn detect_is_the_original_detect() {
    for text in hard_texts(31, 4000, 2500) {
        same_info(&text, detect(&text), whatlang_original::detect(&text));
        assert_eq!(
            detect_script(&text).map(|s| s.name().to_string()),
            whatlang_original::detect_script(&text).map(|s| s.name().to_string()),
            "{text}"
        );
    }
}

#[test]
fn detect_with_lists_is_the_originals() {
    // Lists that leave one, two or no languages of a script, and Mandarin / Japanese.
    let lists: [&[&str]; 5] = [
        &["eng", "cmn"],
        &["eng", "deu", "nld"],
        &["rus", "ukr"],
        &["jpn", "heb", "yid", "ara"],
        &["spa", "por", "ita", "fra", "cat", "ron", "lat", "epo"],
    ];
    for (n, list) in lists.iter().enumerate() {
        let ours: Vec<Lang> = list.iter().map(|c| Lang::from_code(*c).unwrap()).collect();
        let original: Vec<whatlang_original::Lang> = list
            .iter()
            .map(|c| whatlang_original::Lang::from_code(*c).unwrap())
            .collect();
        let (allow, allow0) = (
            Detector::with_allowlist(ours.clone()),
            whatlang_original::Detector::with_allowlist(original.clone()),
        );
        let (deny, deny0) = (
            Detector::with_denylist(ours),
            whatlang_original::Detector::with_denylist(original),
        );
        for text in hard_texts(40 + n as u64, 600, 2500) {
            same_info(&text, allow.detect(&text), allow0.detect(&text));
            same_info(&text, deny.detect(&text), deny0.detect(&text));
        }
    }
}
