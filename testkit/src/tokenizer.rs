//! A byte-level BPE tokenizer with jielong's special tokens at ids 0..=5 (BOS last), trained on a few
//! texts in memory: the shape of tokenizer `pipeline tokenizer train` writes, small enough
//! for tests; and pretraining datasets encoded with it.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use format::{DatasetKind, PretrainDoc, ShardWriter, TokenizerSpec};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// Trains a byte-level BPE of at most `vocab_size` tokens on `texts` (merges of pairs seen at
/// least `min_frequency` times), with the byte-level decoder, so decoding gives text back.
pub fn train_bpe<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    vocab_size: usize,
    min_frequency: u64,
) -> Tokenizer {
    let specials: Vec<AddedToken> = format::SPECIAL_TOKENS
        .iter()
        .map(|(_, text)| AddedToken::from(*text, true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(specials)
        .build();
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_normalizer(None)
    .with_pre_tokenizer(Some(ByteLevel::new(false, true, true).into()))
    .with_post_processor(None)
    .with_decoder(Some(ByteLevelDecoder::default().into()))
    .build()
    .expect("tokenizer builder");
    tokenizer.train(&mut trainer, texts).expect("train bpe");
    // The builder's concrete type, as the library's general `Tokenizer`.
    let json = tokenizer.to_string(false).expect("tokenizer json");
    Tokenizer::from_str(&json).expect("tokenizer from its own json")
}

/// [`train_bpe`] with `min_frequency` 1, saved to `path`.
pub fn save_bpe<'a>(
    path: &Path,
    texts: impl Iterator<Item = &'a str> + Send,
    vocab_size: usize,
) -> Tokenizer {
    let tokenizer = train_bpe(texts, vocab_size, 1);
    tokenizer.save(path, false).expect("save tokenizer");
    tokenizer
}

/// Loads the tokenizer at `path` and the `format` spec that records it: its vocabulary size
/// and the ids of jielong's special tokens.
fn load_with_spec(path: &Path) -> (Tokenizer, TokenizerSpec) {
    let tokenizer = Tokenizer::from_file(path).expect("load tokenizer");
    // A tokenizer from before BOS lacks `bos`; the others are always there.
    let special_tokens: BTreeMap<String, u32> = format::SPECIAL_TOKENS
        .iter()
        .filter_map(|(name, text)| {
            let id = tokenizer.token_to_id(text);
            assert!(
                id.is_some() || *name == "bos",
                "special token {text} missing"
            );
            Some((name.to_string(), id?))
        })
        .collect();
    let spec = TokenizerSpec {
        path: path.to_path_buf(),
        vocab_size: tokenizer.get_vocab_size(true) as u32,
        special_tokens,
    };
    (tokenizer, spec)
}

/// Writes a pretraining dataset to `dir`: each `(id, text)` encoded with the tokenizer at
/// `tokenizer_path`, BOS (when the tokenizer has it) prepended and EOS appended, source `synthetic`; shards of at most `max_shard_tokens`
/// (the writer's default when `None`).
pub fn write_pretrain_dataset(
    dir: &Path,
    tokenizer_path: &Path,
    docs: impl IntoIterator<Item = (String, String)>,
    max_shard_tokens: Option<u64>,
) {
    let (tokenizer, spec) = load_with_spec(tokenizer_path);
    let eos = spec.special_tokens["eos"];
    let bos = spec.special_tokens.get("bos").copied();
    let mut builder = ShardWriter::builder(dir, DatasetKind::Pretrain, spec);
    if let Some(max) = max_shard_tokens {
        builder = builder.max_shard_tokens(max);
    }
    let mut writer = builder.build().expect("writer");
    for (id, text) in docs {
        let mut ids: Vec<u32> = bos.into_iter().collect();
        ids.extend_from_slice(tokenizer.encode(text, false).expect("encode").get_ids());
        ids.push(eos);
        writer
            .write(PretrainDoc {
                doc_id: &id,
                source: "synthetic",
                tokens: &ids,
            })
            .expect("write doc");
    }
    writer.finish().expect("finish");
}
