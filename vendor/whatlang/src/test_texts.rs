//! jielong: texts for the tests that compare the patched code with whatlang 0.18.0's:
//! real sentences, and random texts built to be hard (few letters, so many equal trigram
//! counts; over 600 distinct trigrams; several scripts; characters in two scripts' ranges;
//! upper case that lowercases to other or longer strings; digits and punctuation).

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SENTENCES: &[&str] = &[
    "The quick brown fox jumps over the lazy dog, again and again and again.",
    "Die Ordnung muss für immer in diesem Codebase bleiben",
    "Où est la gare? Je cherche la gare depuis une heure déjà.",
    "Además de todo lo anteriormente dicho, también encontramos...",
    "Та нічого, все нормально. А в тебе як?",
    "Мы хотим видеть дальше, чем окна дома напротив",
    "Ja kulkee kylmä hetki pariimme, Olet hauras kuin jää, Ja kulke",
    "היסטוריה והתפתחות של האלפבית העברי",
    " ككل حوالي 1.6، ومعظم الناس ",
    "हिमालयी वन चिड़िया (जूथेरा सालिमअली) चिड़िया की एक प्रजाति है",
    "県見夜上温国阪題富販 ひらがな カタカナ",
    "Ĉu vi ne volas eklerni Esperanton? Bonvolu! Estas unu de la plej bonaj aferoj!",
    "I am begging pardon",
    "ΣΊΣΥΦΟΣ ΟΔΥΣΣΕΥΣ İstanbul ǅemal ß ẞ",
];

/// Character pools the random texts draw from.
const POOLS: &[&str] = &[
    "ab ",
    "abc  ",
    "aAbB.",
    "abcdefghijklmnopqrstuvwxyz      ",
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?-'\"()[]{}\n\t",
    "áéíóúñüçàèìòùâêîôûäëïöÿœßåæøčšžđćłńśźżőűāēīūğışə ",
    "абвгдежзийклмнопрстуфхцчшщъыьэюяёіїєґђјљњћџ АБВГ ",
    "ᴫᵸ\u{1D2B}\u{1D78}ab абв ",
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年 。，",
    "ひらがなカタカナ漢字 ",
    "αβγδεζηθικλμνξοπρστυφχψωΣΑΒ ",
    "אבגדהוזחטיכלמנסעפצקרשת ",
    "ابتثجحخدذرسشصضطظعغفقكلمنهوي ",
    "अआइईउऊएऐओऔकखगघङचछजझञ ",
    "İIıiΣσς\u{0130}\u{1E9E} ",
    "\u{7F}\u{80}\u{FF}\u{10FFFF}\u{FFFD}\u{2100}\u{AB30}\u{10E60}\u{1EE00} ",
];

/// `count` random texts of up to `max_chars` characters, each drawn from one to three pools
/// (several scripts in one text).
pub fn random_texts(seed: u64, count: usize, max_chars: usize) -> Vec<String> {
    let pools: Vec<Vec<char>> = POOLS.iter().map(|p| p.chars().collect()).collect();
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|_| {
            let len = match rng.below(4) {
                0 => rng.below(20),
                1 => rng.below(200),
                _ => rng.below(max_chars + 1),
            };
            let chosen: Vec<&Vec<char>> = (0..1 + rng.below(3)).map(|_| rng.pick(&pools)).collect();
            // Mostly the first pool, so a text has a main script.
            (0..len)
                .map(|_| {
                    let pool = if rng.below(4) == 0 {
                        rng.pick(&chosen)
                    } else {
                        chosen[0]
                    };
                    *rng.pick(pool)
                })
                .collect()
        })
        .collect()
}

/// The sentences, the sentences repeated (long texts, many equal counts), and random texts.
pub fn hard_texts(seed: u64, random: usize, max_chars: usize) -> Vec<String> {
    let mut texts: Vec<String> = vec![String::new(), "a".into(), ",".into()];
    texts.extend(SENTENCES.iter().map(|s| s.to_string()));
    texts.extend(SENTENCES.iter().map(|s| s.repeat(40)));
    texts.push(SENTENCES.concat());
    // Over 600 distinct trigrams with many equal counts.
    texts.push(
        (0u32..3000)
            .map(|i| {
                let j = i % 1100;
                let letter = |k: u32| char::from(b'a' + (k % 26) as u8);
                format!("{}{}{} ", letter(j), letter(j / 26 + j * 7), letter(j / 3))
            })
            .collect(),
    );
    texts.extend(random_texts(seed, random, max_chars));
    texts
}
