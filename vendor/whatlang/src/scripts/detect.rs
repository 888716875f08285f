use std::cmp::Reverse;

use super::chars;
use super::script::Script;
#[cfg(test)]
use crate::utils::is_stop_char;

#[cfg(test)]
type ScriptCounter = (Script, fn(char) -> bool, usize);

/// Detect only a script by a given text.
/// Works much faster than a complete detection with `detect`.
///
/// # Example
/// ```
/// use whatlang::{detect_script, Script};
/// let script = detect_script("Благодаря Эсперанто вы обрётете друзей по всему миру!").unwrap();
/// assert_eq!(script, Script::Cyrillic);
/// ```
pub fn detect_script(text: &str) -> Option<Script> {
    let raw_info = raw_detect_script(text);
    raw_info.main_script()
}

#[derive(Debug)]
pub struct RawScriptInfo {
    pub counters: Vec<(Script, usize)>,
}

impl RawScriptInfo {
    fn new(mut counters: Vec<(Script, usize)>) -> Self {
        counters.sort_unstable_by_key(|(_, score)| Reverse(*score));
        Self { counters }
    }

    pub(crate) fn main_script(&self) -> Option<Script> {
        // expect - is safe because self.counters is never expected to be empty
        // See raw_detect_script().
        let pair = self.counters.first().expect("counters must not be empty");
        if pair.1 > 0 { Some(pair.0) } else { None }
    }

    pub(crate) fn count(&self, script: Script) -> usize {
        // expect - is safe because self.counters always have all scripts
        // See raw_detect_script().
        self.counters
            .iter()
            .find(|(s, _count)| *s == script)
            .expect("count() failed because script is not found")
            .1
    }
}

/// The scripts in the order the original `raw_detect_script` first checks them.
const SCRIPTS: [Script; 25] = [
    Script::Latin,
    Script::Cyrillic,
    Script::Arabic,
    Script::Mandarin,
    Script::Devanagari,
    Script::Hebrew,
    Script::Ethiopic,
    Script::Georgian,
    Script::Bengali,
    Script::Hangul,
    Script::Hiragana,
    Script::Katakana,
    Script::Greek,
    Script::Kannada,
    Script::Tamil,
    Script::Thai,
    Script::Gujarati,
    Script::Gurmukhi,
    Script::Telugu,
    Script::Malayalam,
    Script::Oriya,
    Script::Myanmar,
    Script::Sinhala,
    Script::Khmer,
    Script::Armenian,
];

/// jielong patch 5: the script counts and their final order as the original loop leaves them,
/// with one classification per character (`chars::script_of`) instead of calling up to 25
/// `is_*` functions in the current order, and ASCII read as bytes (16 at a time while Latin
/// is first: then an ASCII letter only adds to Latin's count). The original moves a found
/// script one place forward; that order decides which of two scripts a character of both
/// (U+1D2B, U+1D78: Latin and Cyrillic) counts for, and how equal counts end up sorted, so
/// it is kept here (`ScriptCounts`).
pub fn raw_detect_script(text: &str) -> RawScriptInfo {
    const CHUNK: usize = 16;
    let mut counts = ScriptCounts::new();
    let blocks = chars::bmp_blocks();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        if counts.place[chars::LATIN as usize] == 0 {
            if let Some(chunk) = bytes.get(at..at + CHUNK) {
                if chunk.is_ascii() {
                    let letters = chunk.iter().filter(|b| b.is_ascii_alphabetic()).count();
                    counts.counts[chars::LATIN as usize] += letters;
                    at += CHUNK;
                    continue;
                }
            }
        }
        let byte = bytes[at];
        if byte.is_ascii() {
            // The other ASCII characters are stop characters or (U+007F) of no script.
            if byte.is_ascii_alphabetic() {
                counts.add(chars::LATIN);
            }
            at += 1;
            continue;
        }
        // A non-ASCII character starts here (`at` only moves by whole characters).
        let ch = text[at..].chars().next().unwrap_or(' ');
        at += ch.len_utf8();
        match chars::script_of(ch, blocks) {
            chars::NO_SCRIPT => {}
            chars::LATIN_OR_CYRILLIC => {
                // The one of the two checked first now.
                if counts.place[chars::LATIN as usize] < counts.place[chars::CYRILLIC as usize] {
                    counts.add(chars::LATIN);
                } else {
                    counts.add(chars::CYRILLIC);
                }
            }
            script => counts.add(script),
        }
    }

    let counters: Vec<(Script, usize)> = counts
        .order
        .iter()
        .map(|&script| (SCRIPTS[script as usize], counts.counts[script as usize]))
        .collect();

    RawScriptInfo::new(counters)
}

/// Characters per script (indexes into `SCRIPTS`), and the order in which the original loop
/// would check the scripts now: `order` lists them, `place` is each one's place in it.
struct ScriptCounts {
    order: [u8; 25],
    place: [u8; 25],
    counts: [usize; 25],
}

impl ScriptCounts {
    fn new() -> Self {
        Self {
            order: std::array::from_fn(|i| i as u8),
            place: std::array::from_fn(|i| i as u8),
            counts: [0; 25],
        }
    }

    /// One more character of `script`, which moves one place forward.
    #[inline]
    fn add(&mut self, script: u8) {
        self.counts[script as usize] += 1;
        let i = self.place[script as usize];
        if i > 0 {
            let before = self.order[i as usize - 1];
            self.order[i as usize - 1] = script;
            self.order[i as usize] = before;
            self.place[script as usize] = i - 1;
            self.place[before as usize] = i;
        }
    }
}

/// whatlang 0.18.0's `raw_detect_script`, unchanged, for the tests to compare with.
#[cfg(test)]
pub(crate) fn original_raw_detect_script(text: &str) -> RawScriptInfo {
    let mut script_counters: [ScriptCounter; 25] = [
        (Script::Latin, chars::is_latin, 0),
        (Script::Cyrillic, chars::is_cyrillic, 0),
        (Script::Arabic, chars::is_arabic, 0),
        (Script::Mandarin, chars::is_mandarin, 0),
        (Script::Devanagari, chars::is_devanagari, 0),
        (Script::Hebrew, chars::is_hebrew, 0),
        (Script::Ethiopic, chars::is_ethiopic, 0),
        (Script::Georgian, chars::is_georgian, 0),
        (Script::Bengali, chars::is_bengali, 0),
        (Script::Hangul, chars::is_hangul, 0),
        (Script::Hiragana, chars::is_hiragana, 0),
        (Script::Katakana, chars::is_katakana, 0),
        (Script::Greek, chars::is_greek, 0),
        (Script::Kannada, chars::is_kannada, 0),
        (Script::Tamil, chars::is_tamil, 0),
        (Script::Thai, chars::is_thai, 0),
        (Script::Gujarati, chars::is_gujarati, 0),
        (Script::Gurmukhi, chars::is_gurmukhi, 0),
        (Script::Telugu, chars::is_telugu, 0),
        (Script::Malayalam, chars::is_malayalam, 0),
        (Script::Oriya, chars::is_oriya, 0),
        (Script::Myanmar, chars::is_myanmar, 0),
        (Script::Sinhala, chars::is_sinhala, 0),
        (Script::Khmer, chars::is_khmer, 0),
        (Script::Armenian, chars::is_armenian, 0),
    ];

    for ch in text.chars() {
        if is_stop_char(ch) {
            continue;
        }

        // For performance reasons, we need to mutate script_counters by calling
        // `swap` function, it would not be possible to do using normal iterator.
        for i in 0..script_counters.len() {
            let found = {
                let (_script, check_fn, ref mut count) = script_counters[i];
                if check_fn(ch) {
                    *count += 1;
                    true
                } else {
                    false
                }
            };
            // Have to let borrow of count fall out of scope before doing swapping, or we could
            // do this above.
            if found {
                // If script was found, move it closer to the front.
                // If the text contains largely 1 or 2 scripts, this will
                // cause these scripts to be eventually checked first.
                if i > 0 {
                    script_counters.swap(i - 1, i);
                }
                break;
            }
        }
    }

    let counters: Vec<(Script, usize)> = script_counters
        .iter()
        .map(|&(script, _, count)| (script, count))
        .collect();

    RawScriptInfo::new(counters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_texts::hard_texts;

    #[test]
    fn script_counts_and_order_are_the_originals() {
        let mut texts = hard_texts(21, 3000, 2500);
        // Equal counts, and the two characters in both Latin and Cyrillic, in both orders.
        texts.extend(
            [
                "ab вг",
                "вг ab",
                "\u{1D2B}",
                "я\u{1D2B}a\u{1D78}",
                "a я я \u{1D78}\u{1D78}",
                "中ひカ한αאب",
                "بא αक한カひ中a",
            ]
            .map(String::from),
        );
        for text in texts {
            assert_eq!(
                raw_detect_script(&text).counters,
                original_raw_detect_script(&text).counters,
                "{text}"
            );
        }
    }

    #[test]
    fn test_script_name() {
        assert_eq!(Script::Cyrillic.name(), "Cyrillic");
        assert_eq!(Script::Katakana.name(), "Katakana");
    }

    #[test]
    fn test_detect_script() {
        assert_eq!(detect_script("1234567890-,;!"), None);

        // One script
        assert_eq!(detect_script("Hello!"), Some(Script::Latin));
        assert_eq!(detect_script("Привет всем!"), Some(Script::Cyrillic));
        assert_eq!(
            detect_script("ქართული ენა მსოფლიო "),
            Some(Script::Georgian)
        );
        assert_eq!(
            detect_script("県見夜上温国阪題富販"),
            Some(Script::Mandarin)
        );
        assert_eq!(
            detect_script(" ككل حوالي 1.6، ومعظم الناس "),
            Some(Script::Arabic)
        );
        assert_eq!(
            detect_script("हिमालयी वन चिड़िया (जूथेरा सालिमअली) चिड़िया की एक प्रजाति है"),
            Some(Script::Devanagari)
        );
        assert_eq!(
            detect_script("היסטוריה והתפתחות של האלפבית העברי"),
            Some(Script::Hebrew)
        );
        assert_eq!(
            detect_script("የኢትዮጵያ ፌዴራላዊ ዴሞክራሲያዊሪፐብሊክ"),
            Some(Script::Ethiopic)
        );

        // Mixed scripts
        assert_eq!(
            detect_script("Привет! Текст на русском with some English."),
            Some(Script::Cyrillic)
        );
        assert_eq!(
            detect_script("Russian word любовь means love."),
            Some(Script::Latin)
        );
    }
}
