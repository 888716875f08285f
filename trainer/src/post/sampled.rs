//! The distribution GRPO's answers were sampled from, for their log-probs: the sampler
//! ([`crate::model::sample::generate_text`]) divides the logits by the temperature and, with a
//! byte-level tokenizer, sets to -inf every token that would make the answer's text invalid
//! UTF-8 given the answer's tokens before it. [`SamplingMask`] replays that mask over a packed
//! batch of (prompt, answer) sequences so the policy's and the reference's log-probs of an
//! answer token are taken under the same distribution the sampler drew it from.

use anyhow::{Result, ensure};
use tch::{Device, Kind, TchError, Tensor};

use crate::model::utf8::{ByteVocab, Utf8State};
use crate::post::data::PackedBatch;

/// Per position of a packed batch, the ids the sampler masked before drawing its label.
#[derive(Debug)]
pub struct SamplingMask {
    /// `[rows, len]` int64: the UTF-8 state before each target label (its
    /// [`Utf8State::index`]), [`UNMASKED`] elsewhere.
    states: Tensor,
    /// `[UNMASKED + 1, vocab]` bool: the banned ids of each state; the last row bans none.
    banned: Tensor,
}

/// The row of [`SamplingMask::banned`] that masks nothing (prompt tokens, padding).
const UNMASKED: usize = Utf8State::ALL.len();

impl SamplingMask {
    /// The mask of `batch`, whose target labels are sampled answers that follow their
    /// prompts (each answer's text starts between characters, as the sampler's does);
    /// `vocab_size` is the model's (ids beyond the tokenizer's are never masked).
    pub fn new(batch: &PackedBatch, vocab: &ByteVocab, vocab_size: i64) -> Result<Self> {
        let host = |t: &Tensor| -> Result<Vec<i64>> {
            Ok(Vec::<i64>::try_from(
                t.f_to_kind(Kind::Int64)?
                    .f_to_device(Device::Cpu)?
                    .f_reshape([-1])?,
            )?)
        };
        let (positions, labels, targets) = (
            host(&batch.positions)?,
            host(&batch.labels)?,
            host(&batch.label_target)?,
        );
        let mut states = vec![UNMASKED as i64; labels.len()];
        let mut state = Utf8State::Between;
        for cell in 0..labels.len() {
            if positions[cell] == 0 {
                state = Utf8State::Between;
            }
            if targets[cell] == 1 {
                ensure!(labels[cell] >= 0, "a target label without a token");
                states[cell] = state.index() as i64;
                state = vocab.advance(state, labels[cell] as u32);
            }
        }
        let mut banned = vec![false; (UNMASKED + 1) * vocab_size as usize];
        for state in Utf8State::ALL {
            for &id in vocab.banned(state) {
                if i64::from(id) < vocab_size {
                    banned[state.index() * vocab_size as usize + id as usize] = true;
                }
            }
        }
        let device = batch.ids.device();
        Ok(Self {
            states: Tensor::f_from_slice(&states)?
                .f_view_as(&batch.labels)?
                .f_to_device(device)?,
            banned: Tensor::f_from_slice(&banned)?
                .f_view([UNMASKED as i64 + 1, vocab_size])?
                .f_to_device(device)?,
        })
    }

    /// `logits` (`[cells, vocab]`, the logits of the batch's flattened cells `cells`, e.g.
    /// only its target labels) with each cell's masked ids at -inf. The mask is built for
    /// those cells only, not for every cell of the batch.
    pub fn apply_at(&self, logits: &Tensor, cells: &Tensor) -> Result<Tensor, TchError> {
        let states = self.states.f_reshape([-1])?.f_index_select(0, cells)?;
        let mask = self.banned.f_index_select(0, &states)?;
        logits.f_masked_fill(&mask, f64::NEG_INFINITY)
    }
}
