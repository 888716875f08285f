//! Readers on the shared real WARC files and on every kind of bad input.

use std::io::Write;
use std::path::PathBuf;

use pipeline::readers::{InputFormat, ReaderOptions, expand_inputs};

use crate::helpers::{collect, warc};

fn cjk_chars(s: &str) -> usize {
    s.chars()
        .filter(|c| ('\u{4e00}'..='\u{9fff}').contains(c))
        .count()
}

#[test]
fn common_crawl_responses_come_out_as_unicode_including_gbk_and_cp1251() {
    let got = collect(
        &warc("resiliparse-cc-2020-34.warc.gz"),
        &ReaderOptions::default(),
    );
    assert!(got.issues.is_empty(), "{:?}", got.issues);
    // 16 HTML responses; requests, metadata and warcinfo are skipped.
    assert_eq!(got.docs.len(), 16);
    assert_eq!(got.skipped, 17 + 16 + 1);
    for doc in &got.docs {
        let bad = doc.text.matches('\u{FFFD}').count();
        assert!(
            bad * 1000 <= doc.text.chars().count().max(1),
            "mojibake in {:?}: {bad} replacement chars",
            doc.url
        );
        assert!(doc.id.starts_with("urn:uuid:"), "{}", doc.id);
    }
    let by_url = |u: &str| {
        got.docs
            .iter()
            .find(|d| d.url.as_deref() == Some(u))
            .expect(u)
    };
    // gb2312 declared in the HTTP header.
    let gb = by_url("http://0760.jxtdw.com/area/sanxiang/");
    assert!(cjk_chars(&gb.text) > 300, "{}", gb.text);
    // gbk declared only in <meta>. A listing page: its main content is the company box, the
    // list of spam post titles is not kept.
    let gbk = by_url("http://041696.com/15477/list_6_4.html");
    assert!(
        cjk_chars(&gbk.text) > 50 && gbk.text.contains("上海特舟实业有限公司"),
        "{}",
        gbk.text
    );
    // windows-1251 Russian.
    let ru = by_url("http://01spb.ru/company/");
    assert!(
        ru.text.chars().filter(|c| ('а'..='я').contains(c)).count() > 500,
        "{}",
        ru.text
    );
    // No charset anywhere in the headers: UTF-8 detected.
    let undeclared = by_url("http://003338.cn/l41/481397.html");
    assert!(cjk_chars(&undeclared.text) > 300, "{}", undeclared.text);
    // Scripts and styles never leak into the text.
    assert!(
        got.docs
            .iter()
            .all(|d| !d.text.contains("function(") && !d.text.contains("{display"))
    );
}

#[test]
fn clipped_warc_reports_the_record_with_its_offset() {
    let path = warc("resiliparse-clipped.warc.gz");
    let got = collect(&path, &ReaderOptions::default());
    // The file holds one response record, cut off in its body.
    assert!(got.docs.is_empty());
    assert_eq!(got.issues.len(), 1, "{:?}", got.issues);
    let issue = got.issues[0].to_string();
    assert!(
        issue.contains("resiliparse-clipped.warc.gz: record 0 (byte 0")
            && issue.contains("truncated")
            && issue.contains("Content-Length 88275"),
        "{issue}"
    );
}

#[test]
fn clueweb_quirks_and_dolma_angle_bracket_uris() {
    let clueweb = collect(
        &warc("resiliparse-clueweb-quirk.warc.gz"),
        &ReaderOptions::default(),
    );
    assert!(clueweb.issues.is_empty(), "{:?}", clueweb.issues);
    assert!(clueweb.docs.len() >= 25, "{} docs", clueweb.docs.len());

    let dolma = collect(
        &warc("dolma-sample-0000.warc.gz"),
        &ReaderOptions::default(),
    );
    assert!(dolma.issues.is_empty(), "{:?}", dolma.issues);
    assert!(dolma.docs.len() >= 20, "{} docs", dolma.docs.len());
    for doc in &dolma.docs {
        let url = doc.url.as_deref().expect("url");
        assert!(
            url.starts_with("http") && !url.contains('<') && !url.contains('>'),
            "{url}"
        );
    }
}

#[test]
fn wet_conversion_records_are_documents() {
    let got = collect(&warc("cc-whirlwind.warc.wet.gz"), &ReaderOptions::default());
    assert_eq!(got.docs.len(), 1);
    assert!(got.docs[0].text.len() > 1000);
    assert!(
        got.docs[0]
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("http"))
    );
}

/// `bytes` in one gzip member.
fn gzipped(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("gz");
    gz.finish().expect("gz")
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn jsonl_bad_lines_are_reported_with_line_numbers_and_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = concat!(
        "{\"id\": \"a\", \"text\": \"first\"}\n",
        "not json at all\n",
        "\n",
        "{\"id\": \"b\", \"body\": \"wrong field\"}\n",
        "{\"id\": \"c\", \"text\": 42}\n",
        "[1, 2]\n",
        "{\"id\": 7, \"text\": \"numeric id\", \"url\": \"https://x.test/\"}\n",
    );
    let path = write(tmp.path(), "in.jsonl", body.as_bytes());
    let got = collect(&path, &ReaderOptions::default());
    assert_eq!(
        got.docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["a", "7"]
    );
    assert_eq!(got.docs[1].url.as_deref(), Some("https://x.test/"));
    let issues: Vec<String> = got.issues.iter().map(ToString::to_string).collect();
    assert_eq!(issues.len(), 4, "{issues:?}");
    assert!(
        issues[0].contains("in.jsonl: line 2: invalid JSON"),
        "{issues:?}"
    );
    assert!(
        issues[1].contains("line 4: missing text field `text`"),
        "{issues:?}"
    );
    assert!(
        issues[2].contains("line 5: field `text` is a number"),
        "{issues:?}"
    );
    assert!(
        issues[3].contains("line 6: expected a JSON object"),
        "{issues:?}"
    );
}

#[test]
fn compressed_jsonl_and_a_huge_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lines = "{\"text\": \"one\"}\n{\"text\": \"two\"}\n";
    let gz_path = write(tmp.path(), "a.jsonl.gz", &gzipped(lines.as_bytes()));
    let zst_path = write(
        tmp.path(),
        "b.jsonl.zst",
        &zstd::encode_all(lines.as_bytes(), 3).expect("zst"),
    );
    for path in [&gz_path, &zst_path] {
        let got = collect(path, &ReaderOptions::default());
        assert_eq!(got.docs.len(), 2, "{}", path.display());
        assert_eq!(
            got.docs[0].id,
            format!("{}:1", path.file_name().expect("name").to_string_lossy())
        );
    }

    // A 50 MB single-line document: refused with its line number, the next line still read.
    let mut big = String::from("{\"text\": \"");
    big.push_str(&"x".repeat(50 << 20));
    big.push_str("\"}\n{\"text\": \"after\"}\n");
    let path = write(tmp.path(), "big.jsonl", big.as_bytes());
    let got = collect(&path, &ReaderOptions::default());
    assert_eq!(got.docs.len(), 1);
    assert_eq!(got.docs[0].text, "after");
    assert_eq!(got.issues.len(), 1);
    assert!(
        got.issues[0].to_string().contains("line 1"),
        "{}",
        got.issues[0]
    );
}

#[test]
fn text_files_empty_and_binary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let gbk = encoding_rs::GBK
        .encode("这是一个用GBK编码的中文文本文件，读出来必须是正确的汉字。")
        .0;
    let good = write(tmp.path(), "zh.txt", &gbk);
    let empty = write(tmp.path(), "empty.txt", b"");
    let binary = write(tmp.path(), "blob.txt", &[0u8, 1, 2, 255, 0, 7]);
    let got = collect(&good, &ReaderOptions::default());
    assert_eq!(got.docs.len(), 1);
    assert!(
        got.docs[0].text.starts_with("这是一个用GBK编码"),
        "{}",
        got.docs[0].text
    );
    let got = collect(&empty, &ReaderOptions::default());
    assert!(got.docs.is_empty() && got.issues[0].to_string().contains("empty file"));
    let got = collect(&binary, &ReaderOptions::default());
    assert!(got.docs.is_empty() && got.issues[0].to_string().contains("binary"));

    // A binary blob named like a WARC: reported, no hang, no crash.
    let fake = write(tmp.path(), "fake.warc", &[7u8; 4096]);
    let got = collect(&fake, &ReaderOptions::default());
    assert!(got.docs.is_empty());
    assert_eq!(got.issues.len(), 1, "{:?}", got.issues);
}

#[test]
fn parquet_is_read_in_slices() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("docs.parquet");
    let docs: Vec<pipeline::clean::work::KeptDoc> = (0..20_000)
        .map(|i| pipeline::clean::work::KeptDoc {
            id: format!("p{i}"),
            url: None,
            source: "s".into(),
            lang: None,
            text: format!("document number {i}"),
        })
        .collect();
    pipeline::clean::docs_table::write_kept_parquet(&path, &docs).expect("write parquet");
    let got = collect(&path, &ReaderOptions::default());
    assert!(got.issues.is_empty(), "{:?}", got.issues);
    assert_eq!(got.docs.len(), 20_000);
    assert_eq!(got.docs[12_345].id, "p12345");
    assert_eq!(got.docs[12_345].text, "document number 12345");

    let options = ReaderOptions {
        text_field: "body".into(),
        ..ReaderOptions::default()
    };
    let got = collect(&path, &options);
    assert!(got.docs.is_empty());
    assert!(
        got.issues[0].to_string().contains("no column `body`"),
        "{}",
        got.issues[0]
    );
}

#[test]
fn inputs_expand_from_directories_and_globs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(tmp.path().join("sub")).expect("mkdir");
    write(tmp.path(), "a.jsonl", b"");
    write(tmp.path(), "sub/b.txt", b"");
    write(tmp.path(), "sub/ignored.bin", b"");
    let dir = tmp.path().display().to_string();
    let files = expand_inputs(std::slice::from_ref(&dir), InputFormat::Auto).expect("expand");
    assert_eq!(files.len(), 2, "{files:?}");
    let files = expand_inputs(&[format!("{dir}/*.jsonl")], InputFormat::Auto).expect("glob");
    assert_eq!(files.len(), 1);
    // The config's order is kept (it fixes the docs-NNNNN numbering); a file named twice
    // is read once.
    let b = format!("{dir}/sub/b.txt");
    let a = format!("{dir}/a.jsonl");
    let files = expand_inputs(&[b.clone(), a.clone(), b.clone()], InputFormat::Auto).expect("list");
    assert_eq!(files, vec![PathBuf::from(&b), PathBuf::from(&a)]);
    let err =
        expand_inputs(&[format!("{dir}/*.parquet")], InputFormat::Auto).expect_err("no match");
    assert!(err.to_string().contains("matches no file"), "{err}");
}

/// A file read as a stream of its bytes (a remote object as it arrives, `run.stream_inputs`)
/// gives what reading the file gives: the same documents, ids and problems; Parquet, whose
/// footer comes first, is not streamable and is refused as a stream.
#[test]
fn a_stream_of_a_files_bytes_reads_as_the_file_and_parquet_is_not_streamable() {
    use pipeline::readers::{read_in_batches, read_stream_in_batches, streamable};
    let tmp = tempfile::tempdir().expect("tempdir");
    let lines = "{\"text\": \"one\"}\n{broken\n{\"text\": \"two\", \"id\": \"b\"}\n";
    let jsonl = write(tmp.path(), "a.jsonl.gz", &gzipped(lines.as_bytes()));
    let options = ReaderOptions::default();
    for path in [jsonl, warc("resiliparse-cc-2020-34.warc.gz")] {
        assert!(streamable(&path, &options), "{}", path.display());
        let mut from_file = Vec::new();
        let seen_file = read_in_batches(&path, &options, 4, &mut |b| {
            from_file.extend(b);
            Ok(())
        })
        .expect("read file");
        let mut from_stream = Vec::new();
        let stream = Box::new(std::fs::File::open(&path).expect("open"));
        let seen_stream = read_stream_in_batches(&path, stream, &options, 4, &mut |b| {
            from_stream.extend(b);
            Ok(())
        })
        .expect("read stream");
        assert!(!from_file.is_empty());
        let docs = |d: &[pipeline::document::Document]| {
            d.iter()
                .map(|d| (d.id.clone(), d.text.clone(), d.source.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(docs(&from_stream), docs(&from_file), "{}", path.display());
        let issues = |s: &pipeline::readers::FileRead| {
            s.issues.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        assert_eq!(issues(&seen_stream), issues(&seen_file));
        assert_eq!(seen_stream.skipped, seen_file.skipped);
    }
    let parquet = tmp.path().join("docs.parquet");
    assert!(!streamable(&parquet, &options));
    assert!(!streamable(&tmp.path().join("notes.bin"), &options));
    let as_jsonl = ReaderOptions {
        format: InputFormat::Jsonl,
        ..ReaderOptions::default()
    };
    assert!(streamable(&tmp.path().join("notes.bin"), &as_jsonl));
    let refused = read_stream_in_batches(
        &parquet,
        Box::new(std::io::empty()),
        &options,
        4,
        &mut |_| Ok(()),
    );
    assert!(
        format!("{:#}", refused.expect_err("parquet as a stream")).contains("Parquet"),
        "refused naming the format"
    );
}
