#[cfg(test)]
use hashbrown::HashMap;

use super::LangProfileList;
use super::packed::{EMPTY, PackedTrigram, home_slot, pack, with_ranked_trigrams};
#[cfg(test)]
use super::utils::get_trigrams_with_positions;
use super::{ARABIC_LANGS, CYRILLIC_LANGS, DEVANAGARI_LANGS, HEBREW_LANGS, LATIN_LANGS};
#[cfg(test)]
use super::{LangProfile, Trigram};
use super::{MAX_TOTAL_DISTANCE, MAX_TRIGRAM_DISTANCE};
use crate::Lang;
use crate::core::{FilterList, Info, InternalQuery, Text, calculate_confidence};
use crate::scripts::grouping::MultiLangScript;

#[derive(Debug)]
pub struct RawOutcome {
    pub trigrams_count: usize,
    #[allow(dead_code)]
    pub raw_distances: Vec<(Lang, u32)>,
    pub scores: Vec<(Lang, f64)>,
}

#[inline]
pub fn detect(iquery: &InternalQuery) -> Option<Info> {
    let raw_outcome = raw_detect(iquery);
    let RawOutcome {
        trigrams_count,
        scores,
        ..
    } = raw_outcome;

    let mut raw_scores_iter = scores.into_iter();

    let opt_lang_score1 = raw_scores_iter.next();
    let opt_lang_score2 = raw_scores_iter.next();

    // TODO: Logic is duplicated in alphabets. Consider refactoring
    opt_lang_score1.map(|(lang1, score1)| {
        let script = iquery.multi_lang_script.to_script();
        let confidence = if let Some((_, score2)) = opt_lang_score2 {
            calculate_confidence(score1, score2, trigrams_count)
        } else {
            1.0
        };
        Info::new(script, lang1, confidence)
    })
}

#[inline]
pub fn raw_detect(iquery: &InternalQuery) -> RawOutcome {
    let lang_profile_list = script_to_lang_profile_list(iquery.multi_lang_script);
    calculate_scores_in_profiles(&iquery.text, iquery.filter_list, lang_profile_list)
}

fn script_to_lang_profile_list(script: MultiLangScript) -> LangProfileList {
    use MultiLangScript as MLS;
    match script {
        MLS::Latin => LATIN_LANGS,
        MLS::Cyrillic => CYRILLIC_LANGS,
        MLS::Arabic => ARABIC_LANGS,
        MLS::Devanagari => DEVANAGARI_LANGS,
        MLS::Hebrew => HEBREW_LANGS,
    }
}

#[inline]
fn calculate_scores_in_profiles(
    text: &Text,
    filter_list: &FilterList,
    lang_profile_list: LangProfileList,
) -> RawOutcome {
    let mut lang_distances: Vec<(Lang, u32)> = vec![];

    // jielong patch: every language's distance from one pass over the text's trigrams
    // through an index of the profiles (the same integers as `calculate_distance` per
    // language, which looked each of a language's 300 trigrams up in the text's map).
    let index = ProfileIndex::of(lang_profile_list);
    // (A fixed size, which the language index is masked to, spares a bounds check per entry.)
    let mut sums = [0i64; MAX_LANGS];
    let unique_trigrams_count = with_ranked_trigrams(&text.lowercase(), |ranked| {
        for (n, &trigram) in ranked.iter().enumerate() {
            for &(lang_index, i) in index.entries_of(trigram) {
                // A found trigram costs |n - i| (up to 599) instead of a missing one's 300.
                sums[usize::from(lang_index) % MAX_LANGS] +=
                    i64::from(MAX_TRIGRAM_DISTANCE) - (n as i64 - i64::from(i)).abs();
            }
        }
        ranked.len()
    });
    for (lang_index, &(lang, lang_trigrams)) in lang_profile_list.iter().enumerate() {
        if !filter_list.is_allowed(lang) {
            continue;
        }
        let dist = finish_distance(
            (lang_trigrams.len() as i64 * i64::from(MAX_TRIGRAM_DISTANCE) - sums[lang_index])
                as u32,
            unique_trigrams_count,
        );
        lang_distances.push(((lang), dist));
    }

    // Sort languages by distance
    lang_distances.sort_unstable_by_key(|(_, dist)| *dist);

    let max_dist = unique_trigrams_count as u32 * MAX_TRIGRAM_DISTANCE;

    let raw_scores = lang_distances
        .iter()
        .map(|&(lang, distance)| (lang, distance_to_raw_score(distance, max_dist)))
        .collect();

    RawOutcome {
        trigrams_count: unique_trigrams_count,
        scores: raw_scores,
        raw_distances: lang_distances,
    }
}

#[cfg(test)]
#[inline]
fn calculate_distance(lang_trigrams: LangProfile, text_trigrams: &HashMap<Trigram, u32>) -> u32 {
    let mut total_dist = 0u32;

    for (i, &trigram) in lang_trigrams.iter().enumerate() {
        let dist = match text_trigrams.get(&trigram) {
            Some(&n) => (n as i32 - i as i32).unsigned_abs(),
            None => MAX_TRIGRAM_DISTANCE,
        };
        total_dist += dist;
    }

    finish_distance(total_dist, text_trigrams.len())
}

#[inline]
fn finish_distance(mut total_dist: u32, text_trigrams_count: usize) -> u32 {
    let count = text_trigrams_count as u32;

    if MAX_TRIGRAM_DISTANCE > count {
        let delta = MAX_TRIGRAM_DISTANCE - count;
        total_dist -= delta * MAX_TRIGRAM_DISTANCE;
    }

    total_dist.clamp(0, MAX_TOTAL_DISTANCE)
}

/// The most languages of one script (Latin has 37).
const MAX_LANGS: usize = 64;

/// jielong patch: for every trigram of a script's profiles, the languages whose profile has
/// it and its position there; built once per script. An open-addressing table of packed
/// trigrams (jielong patch 4; it was a `HashMap<Trigram, Vec<_>>`).
struct ProfileIndex {
    keys: Vec<PackedTrigram>,
    /// Per slot, its trigram's range in `entries`.
    spans: Vec<(u32, u32)>,
    /// (language index in the list, position in its profile), grouped by trigram.
    entries: Vec<(u16, u16)>,
    shift: u32,
}

impl ProfileIndex {
    fn of(list: LangProfileList) -> &'static ProfileIndex {
        use std::sync::OnceLock;
        static INDEXES: [OnceLock<ProfileIndex>; 5] = [const { OnceLock::new() }; 5];
        let slot = [
            LATIN_LANGS,
            CYRILLIC_LANGS,
            ARABIC_LANGS,
            DEVANAGARI_LANGS,
            HEBREW_LANGS,
        ]
        .iter()
        .position(|l| std::ptr::eq(*l, list))
        .expect("a script's profile list");
        INDEXES[slot].get_or_init(|| Self::build(list))
    }

    fn build(list: LangProfileList) -> ProfileIndex {
        assert!(
            list.len() <= MAX_LANGS,
            "{} languages in a script",
            list.len()
        );
        let mut by_trigram: std::collections::BTreeMap<PackedTrigram, Vec<(u16, u16)>> =
            Default::default();
        for (lang_index, &(_, trigrams)) in list.iter().enumerate() {
            for (i, &trigram) in trigrams.iter().enumerate() {
                by_trigram
                    .entry(pack(trigram))
                    .or_default()
                    .push((lang_index as u16, i as u16));
            }
        }
        let bits = (2 * by_trigram.len())
            .next_power_of_two()
            .trailing_zeros()
            .max(4);
        let shift = 64 - bits;
        let mut keys = vec![EMPTY; 1 << bits];
        let mut spans = vec![(0, 0); 1 << bits];
        let mut entries = Vec::new();
        for (packed, positions) in by_trigram {
            let mut slot = home_slot(packed, shift);
            while keys[slot] != EMPTY {
                slot = (slot + 1) & (keys.len() - 1);
            }
            keys[slot] = packed;
            spans[slot] = (
                entries.len() as u32,
                (entries.len() + positions.len()) as u32,
            );
            entries.extend(positions);
        }
        ProfileIndex {
            keys,
            spans,
            entries,
            shift,
        }
    }

    /// The (language index, position) pairs of `packed`; none if no profile has it.
    #[inline]
    fn entries_of(&self, packed: PackedTrigram) -> &[(u16, u16)] {
        let mask = self.keys.len() - 1;
        let mut slot = home_slot(packed, self.shift);
        loop {
            let key = self.keys[slot];
            if key == packed {
                let (start, end) = self.spans[slot];
                return &self.entries[start as usize..end as usize];
            }
            if key == EMPTY {
                return &[];
            }
            slot = (slot + 1) & mask;
        }
    }
}

#[inline]
fn distance_to_raw_score(distance: u32, max_distance: u32) -> f64 {
    let similarity = max_distance - distance;
    similarity as f64 / max_distance as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_distances_are_the_per_language_ones() {
        for text in [
            "Die Ordnung muss für immer in diesem Codebase bleiben",
            "The quick brown fox jumps over the lazy dog, again and again",
            "a",
            "Où est la gare? Je cherche la gare depuis une heure déjà.",
        ] {
            let lower = Text::new(text);
            let positions = get_trigrams_with_positions(&lower.lowercase()).trigram_positions;
            let outcome = calculate_scores_in_profiles(&lower, &FilterList::default(), LATIN_LANGS);
            for (lang, dist) in outcome.raw_distances {
                let profile = LATIN_LANGS.iter().find(|(l, _)| *l == lang).unwrap().1;
                assert_eq!(
                    dist,
                    calculate_distance(profile, &positions),
                    "{lang:?} on {text}"
                );
            }
        }
    }

    #[test]
    fn test_when_german_is_given() {
        let text = "Die Ordnung muss für immer in diesem Codebase bleiben";
        let iq = InternalQuery {
            text: Text::new(text),
            filter_list: &FilterList::default(),
            multi_lang_script: MultiLangScript::Latin,
        };
        let raw_outcome = raw_detect(&iq);

        assert_eq!(raw_outcome.trigrams_count, 50);

        let &(first_lang, first_score) = raw_outcome.scores.first().unwrap();
        let &(_last_lang, last_score) = raw_outcome.scores.last().unwrap();

        assert_eq!(first_lang, Lang::Deu);

        assert!(first_score >= 0.0);
        assert!(first_score <= 1.0);

        assert!(last_score >= 0.0);
        assert!(last_score <= 1.0);
    }
}
