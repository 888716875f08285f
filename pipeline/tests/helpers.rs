//! Shared test helpers: the repository's test WARC files and a reader that collects events.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pipeline::document::{Document, ReadIssue};
use pipeline::readers::{ReadEvent, ReaderOptions, read_file};
use pipeline::tokenize::train::{TokenizerTrainConfig, train_tokenizer};

/// `data/testdata/warc/NAME` of the repository (real WARC files; origins in their SOURCES.md).
pub fn warc(name: &str) -> PathBuf {
    // Resolved at run time, not baked in: builds are shared between clones.
    let path = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .expect("CARGO_MANIFEST_DIR (set by cargo when it runs tests)")
        .join("../data/testdata/warc")
        .join(name);
    assert!(
        path.exists(),
        "{} missing: the test WARC files ship with the repository",
        path.display()
    );
    path
}

#[derive(Debug, Default)]
pub struct Collected {
    pub docs: Vec<Document>,
    pub issues: Vec<ReadIssue>,
    pub skipped: usize,
}

pub fn collect(path: &Path, options: &ReaderOptions) -> Collected {
    let mut out = Collected::default();
    read_file(path, options, &mut |event| match event {
        ReadEvent::Document(d) => out.docs.push(d),
        ReadEvent::Issue(i) => out.issues.push(i),
        ReadEvent::Skipped => out.skipped += 1,
    })
    .expect("read_file");
    out
}

/// A small deterministic generator, so test corpora are varied but reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        items[(self.0 % items.len() as u64) as usize]
    }
}

const ADJ: &[&str] = &[
    "quiet", "busy", "ancient", "modern", "narrow", "wide", "bright", "gentle", "famous", "small",
    "crowded", "peaceful", "northern", "coastal", "wooden", "painted", "hidden", "open",
];
const NOUN: &[&str] = &[
    "river",
    "mountain",
    "library",
    "harbor",
    "garden",
    "market",
    "bridge",
    "forest",
    "village",
    "station",
    "museum",
    "school",
    "kitchen",
    "orchard",
    "festival",
    "railway",
    "castle",
    "valley",
    "teacher",
    "farmer",
    "painter",
    "doctor",
    "student",
    "traveller",
];
const VERB: &[&str] = &[
    "visited",
    "described",
    "remembered",
    "painted",
    "crossed",
    "opened",
    "built",
    "studied",
    "repaired",
    "followed",
    "admired",
    "photographed",
    "explored",
    "measured",
];
const PREP: &[&str] = &[
    "near", "behind", "across", "beside", "above", "below", "around", "beyond",
];

/// English prose that passes every default filter: long enough, punctuated, varied.
pub fn good_english(seed: usize) -> String {
    let mut rng = Rng::new(seed as u64 + 1);
    (0..6)
        .map(|_| {
            (0..4)
                .map(|_| {
                    format!(
                        "The {} {} {} the {} {} {} the {} {} with the {}.",
                        rng.pick(ADJ),
                        rng.pick(NOUN),
                        rng.pick(VERB),
                        rng.pick(ADJ),
                        rng.pick(NOUN),
                        rng.pick(PREP),
                        rng.pick(ADJ),
                        rng.pick(NOUN),
                        rng.pick(NOUN)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

const ZH_PLACE: &[&str] = &[
    "杭州", "成都", "西安", "广州", "南京", "武汉", "苏州", "重庆", "昆明", "青岛", "大理", "厦门",
    "拉萨", "桂林", "洛阳", "开封",
];
const ZH_PERSON: &[&str] = &[
    "老师",
    "学生",
    "农民",
    "医生",
    "画家",
    "游客",
    "记者",
    "厨师",
    "工人",
    "作家",
    "司机",
    "商人",
    "渔民",
    "演员",
    "律师",
    "科学家",
];
const ZH_VERB: &[&str] = &[
    "参观", "介绍", "研究", "记录", "拍摄", "讨论", "修复", "描写", "打扫", "设计", "保护", "欣赏",
    "调查", "赞美", "翻译", "整理",
];
const ZH_NOUN: &[&str] = &[
    "博物馆",
    "公园",
    "图书馆",
    "寺庙",
    "市场",
    "学校",
    "河流",
    "山区",
    "古镇",
    "火车站",
    "美食",
    "文化",
    "历史",
    "建筑",
    "节日",
    "茶馆",
    "码头",
    "森林",
    "村庄",
    "剧院",
    "工厂",
    "医院",
    "广场",
    "桥梁",
];
const ZH_ADJ: &[&str] = &[
    "古老", "热闹", "安静", "美丽", "著名", "新建", "传统", "现代", "偏远", "干净", "宽阔", "狭窄",
];
const ZH_TIME: &[&str] = &[
    "去年",
    "今天",
    "上个月",
    "春天",
    "周末",
    "早上",
    "晚上",
    "前几年",
    "最近",
    "冬天",
];

/// Chinese prose that passes the cmn_Hani preset.
pub fn good_chinese(seed: usize) -> String {
    let mut rng = Rng::new(seed as u64 + 101);
    // Every few words is a random pick, so 5-grams rarely repeat (as in real prose).
    let sentence = |rng: &mut Rng| -> String {
        let clause = |rng: &mut Rng| {
            format!(
                "{}{}{}的{}",
                rng.pick(ZH_PERSON),
                rng.pick(ZH_VERB),
                rng.pick(ZH_ADJ),
                rng.pick(ZH_NOUN)
            )
        };
        let end = rng.pick(&["。", "。", "！", "？"]);
        format!(
            "{}，{}{}，{}{}",
            rng.pick(ZH_TIME),
            rng.pick(ZH_PLACE),
            clause(rng),
            clause(rng),
            end
        )
    };
    (0..6)
        .map(|_| {
            (0..4)
                .map(|_| sentence(&mut rng))
                .collect::<Vec<_>>()
                .join("")
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A JSONL corpus of English and Chinese documents; returns (path, id -> text).
pub fn corpus(dir: &Path, n: usize) -> (PathBuf, HashMap<String, String>) {
    let mut texts = HashMap::new();
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let text = if i % 3 == 0 {
                good_chinese(i)
            } else {
                good_english(i)
            };
            let id = format!("doc-{i:03}");
            texts.insert(id.clone(), text.clone());
            serde_json::json!({"id": id, "text": text}).to_string()
        })
        .collect();
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, lines.join("\n")).expect("write corpus");
    (path, texts)
}

/// A 600-token byte-level BPE tokenizer trained by the pipeline on `corpus`.
pub fn trained_tokenizer(dir: &Path, corpus: &Path) -> PathBuf {
    let output = dir.join("tokenizer.json");
    let summary = train_tokenizer(
        &TokenizerTrainConfig {
            inputs: vec![corpus.display().to_string()],
            reader: ReaderOptions::default(),
            output: output.clone(),
            vocab_size: 600,
            min_frequency: 2,
            max_bytes: 0,
            max_word_bytes: 100_000_000,
        },
        false,
    )
    .expect("train");
    assert!(summary.documents > 0);
    assert!(
        summary.vocab_size > 300 && summary.vocab_size <= 600,
        "{summary:?}"
    );
    output
}
