//! Windows from format datasets: the stream across shards, determinism from (seed, step),
//! windows aligned to document starts.

use format::{Dataset, DatasetKind};
use trainer::engine::MicroBatch;
use trainer::engine::config::DataOrder;
use trainer::pretrain::data::{TokenStream, WindowSampler};

use crate::helpers::write_dataset;

/// Every document's ids back to back, read through `format` directly.
fn concatenated(dir: &std::path::Path) -> Vec<i64> {
    let dataset = Dataset::open_kind(dir, DatasetKind::Pretrain).expect("open");
    let mut all = Vec::new();
    for i in 0..dataset.num_shards() {
        let shard = dataset.shard(i).expect("shard");
        for batch in shard.batches() {
            let tokens = batch.tokens("tokens").expect("tokens");
            for row in 0..tokens.len() {
                all.extend(tokens.row_u32(row).into_iter().map(i64::from));
            }
        }
    }
    all
}

#[test]
fn the_stream_reads_across_shard_boundaries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = write_dataset(tmp.path(), "ds", 0, 60, 300);
    let dataset = Dataset::open(&dir).expect("open");
    assert!(dataset.num_shards() >= 3, "want several shards");
    let expected = concatenated(&dir);
    let stream = TokenStream::open(&dir).expect("stream");
    assert_eq!(stream.len() as usize, expected.len());
    // Reads of every length at every position straddle shard joins somewhere.
    for (pos, len) in [(0, 1), (0, expected.len()), (290, 40), (599, 7), (100, 333)] {
        if pos + len > expected.len() {
            continue;
        }
        let mut buf = vec![0i64; len];
        stream.read(pos as u64, &mut buf).expect("read");
        assert_eq!(buf, expected[pos..pos + len], "read at {pos} len {len}");
    }
    let mut buf = vec![0i64; 2];
    assert!(stream.read(expected.len() as u64 - 1, &mut buf).is_err());
}

#[test]
fn batches_depend_only_on_seed_and_step() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = write_dataset(tmp.path(), "ds", 0, 60, 300);
    let sampler = |seed| {
        WindowSampler::new(
            TokenStream::open(&dir).expect("stream"),
            16,
            4,
            DataOrder::Random,
            seed,
        )
        .expect("sampler")
        .with_doc_starts(0.5)
    };
    let (a, b, c) = (sampler(1), sampler(1), sampler(2));
    let x = a.train_batch(MicroBatch::single(5, 1, 2)).expect("batch");
    let y = b.train_batch(MicroBatch::single(5, 1, 2)).expect("batch");
    assert!(x.inputs.equal(&y.inputs) && x.targets.equal(&y.targets));
    assert!(
        !x.inputs.equal(
            &a.train_batch(MicroBatch::single(6, 1, 2))
                .expect("batch")
                .inputs
        )
    );
    assert!(
        !x.inputs.equal(
            &a.train_batch(MicroBatch::single(5, 0, 2))
                .expect("batch")
                .inputs
        )
    );
    assert!(
        !x.inputs.equal(
            &c.train_batch(MicroBatch::single(5, 1, 2))
                .expect("batch")
                .inputs
        )
    );
    assert_eq!(x.inputs.size(), [4, 16]);
    assert_eq!(x.target_tokens, 64);
    // Targets are the inputs shifted by one.
    assert!(x.inputs.narrow(1, 1, 15).equal(&x.targets.narrow(1, 0, 15)));
    // A step's windows are the same however they split into ranks: rank 1 of 2 holds the
    // second half of the micro-batch of twice the rows.
    let wide = WindowSampler::new(
        TokenStream::open(&dir).expect("stream"),
        16,
        8,
        DataOrder::Random,
        1,
    )
    .expect("sampler")
    .with_doc_starts(0.5);
    let whole = wide
        .train_batch(MicroBatch::single(5, 0, 1))
        .expect("batch");
    let at = MicroBatch {
        step: 5,
        micro: 0,
        accum: 1,
        rank: 1,
        world: 2,
    };
    let half = a.train_batch(at).expect("batch");
    assert!(half.inputs.equal(&whole.inputs.narrow(0, 4, 4)));
}

#[test]
fn sequential_order_walks_the_stream_and_wraps() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = write_dataset(tmp.path(), "ds", 0, 20, 1 << 20);
    let expected = concatenated(&dir);
    let sampler = WindowSampler::new(
        TokenStream::open(&dir).expect("stream"),
        8,
        2,
        DataOrder::Sequential,
        0,
    )
    .expect("sampler");
    let windows = sampler.sequential_windows() as usize;
    // Step 1, micro 1 of 2: windows 2 and 3.
    let batch = sampler
        .train_batch(MicroBatch::single(1, 1, 2))
        .expect("batch");
    let row: Vec<i64> = Vec::try_from(batch.inputs.get(1)).expect("row");
    assert_eq!(row, expected[24..32]);
    // Far beyond the end it wraps to the first windows.
    let step = (windows as u64) + 1; // index = windows * 2 * 2 ≡ 0 mod windows
    let wrapped = sampler
        .train_batch(MicroBatch::single(step, 0, 2))
        .expect("batch");
    let first: Vec<i64> = Vec::try_from(wrapped.inputs.get(0)).expect("row");
    assert_eq!(first, expected[0..8]);
    // Validation batches run out instead of wrapping.
    assert!(sampler.eval_batch(0).expect("eval").is_some());
    assert!(sampler.eval_batch(windows as u64).expect("eval").is_none());
}

#[test]
fn a_dataset_shorter_than_one_window_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = write_dataset(tmp.path(), "ds", 0, 1, 1 << 20);
    let stream = TokenStream::open(&dir).expect("stream");
    let err = WindowSampler::new(stream, 4096, 1, DataOrder::Random, 0).expect_err("too short");
    assert!(err.to_string().contains("seq_len"), "{err}");
}

#[test]
fn a_fraction_of_windows_start_at_a_document_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = write_dataset(tmp.path(), "ds", 0, 60, 300);
    let expected = concatenated(&dir);
    let stream = TokenStream::open(&dir).expect("stream");
    let bos = i64::from(stream.tokenizer().bos().expect("the dataset has BOS"));
    // Document starts, read from the shards' offsets, are exactly where BOS is.
    let starts: Vec<usize> = (0..expected.len())
        .filter(|&i| expected[i] == bos)
        .collect();
    assert_eq!(stream.documents() as usize, starts.len());
    for (d, &at) in starts.iter().enumerate() {
        assert_eq!(stream.document_start(d as u64).expect("start"), at as u64);
    }
    let bos_first = |fraction: f64| -> usize {
        let sampler = WindowSampler::new(
            TokenStream::open(&dir).expect("stream"),
            16,
            8,
            DataOrder::Random,
            3,
        )
        .expect("sampler")
        .with_doc_starts(fraction);
        (1..=50)
            .map(|step| {
                let batch = sampler
                    .train_batch(MicroBatch::single(step, 0, 1))
                    .expect("batch");
                let firsts: Vec<i64> =
                    Vec::try_from(batch.inputs.narrow(1, 0, 1).reshape([-1])).expect("ids");
                firsts.iter().filter(|&&t| t == bos).count()
            })
            .sum()
    };
    // 400 windows each time.
    assert_eq!(bos_first(1.0), 400, "every window starts at a BOS");
    let half = bos_first(0.5);
    assert!(
        (150..=260).contains(&half),
        "{half} of 400 windows start at BOS"
    );
    let none = bos_first(0.0);
    assert!(none < 60, "{none} of 400 windows start at BOS by chance");
}
