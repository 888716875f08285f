"""Crawl-shaped bench input: wraps bench corpus documents (JSONL, one {"id", "text"} a line,
from bench/gen_corpus.py) into HTML pages inside gzipped WARC response records, the way a
Common Crawl WARC holds them, so the object store traffic of a run can be measured where the
extracted text is a small part of the input.

Each page's markup is a real page's (data/extract-eval/pages.jsonl.gz, cycled) with its text
removed (scripts and styles kept, as they are bytes a crawl stores but no text), cut at a tag
so that the page holds about MARKUP_RATIO bytes of markup per byte of the document's text (19
by default: the extracted text of data/extract-eval's 178 real pages is 5.0% of their HTML);
the document's paragraphs are its <article>. Every record is its
own gzip member (as in Common Crawl), and the records are spread over FILES files of about
equal size.

    python3 bench/warc_corpus.py CORPUS.jsonl OUT_DIR FILES [MARKUP_RATIO]

Prints the text bytes, the WARC bytes and their ratio.
"""

import gzip
import html
import json
import os
import re
import sys
import uuid

PAGES = os.path.join(os.path.dirname(__file__), "..", "data", "extract-eval", "pages.jsonl.gz")
KEEP = re.compile(r"(<script\b.*?</script>|<style\b.*?</style>)", re.S | re.I)
TEXT = re.compile(r">[^<]+<")


def shells():
    """Each real page's markup without its text, as segments: scripts and styles whole, the
    rest with its text nodes emptied."""
    out = []
    with gzip.open(PAGES, "rt", encoding="utf-8") as f:
        for line in f:
            parts = KEEP.split(json.loads(line)["html"])
            out.append([p if i % 2 else TEXT.sub("><", p) for i, p in enumerate(parts)])
    return out


def page(shell, doc, ratio):
    """The shell's markup up to RATIO bytes per text byte (whole scripts and styles, the rest
    cut after a tag), the document's paragraphs as the article right after <body>."""
    paragraphs = "".join(f"<p>{html.escape(p)}</p>\n" for p in doc["text"].split("\n") if p.strip())
    budget = ratio * len(doc["text"].encode())
    markup = ""
    for i, part in enumerate(shell):
        room = budget - len(markup)
        if room <= 0:
            break
        if i % 2:
            if len(part) <= room:
                markup += part
            continue
        cut = part[:room]
        markup += cut[: cut.rfind(">") + 1] if ">" in cut else ""
    article = f"<main><article>\n{paragraphs}</article></main>"
    body = re.search(r"<body[^>]*>", markup, re.I)
    if body:
        markup = markup[: body.end()] + article + markup[body.end():]
    else:
        markup += f"</head><body>{article}"
    return f"{markup}</body></html>".encode()


def record(i, doc, body):
    http = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    head = (f"WARC/1.0\r\nWARC-Type: response\r\n"
            f"WARC-Target-URI: https://bench.invalid/{doc['id']}\r\n"
            f"WARC-Date: 2026-01-01T00:00:00Z\r\n"
            f"WARC-Record-ID: <urn:uuid:{uuid.UUID(int=i + 1)}>\r\n"
            f"Content-Type: application/http; msgtype=response\r\n"
            f"Content-Length: {len(http)}\r\n\r\n").encode()
    return gzip.compress(head + http + b"\r\n\r\n", mtime=0)


def main():
    corpus, out_dir, files = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ratio = int(sys.argv[4]) if len(sys.argv) > 4 else 19
    os.makedirs(out_dir, exist_ok=True)
    shell = shells()
    with open(corpus, encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    per = -(-len(docs) // files)
    text = warc = 0
    for n in range(files):
        with open(os.path.join(out_dir, f"part-{n:02}.warc.gz"), "wb") as out:
            for i in range(n * per, min(len(docs), (n + 1) * per)):
                rec = record(i, docs[i], page(shell[i % len(shell)], docs[i], ratio))
                out.write(rec)
                text += len(docs[i]["text"].encode())
                warc += len(rec)
    print(f"{len(docs)} pages: text {text / 1e6:.1f} MB, WARC {warc / 1e6:.1f} MB, "
          f"text / WARC bytes {text / warc:.3f}")


if __name__ == "__main__":
    main()
