"""Extraction benchmark helpers, run by scripts/bench-extract:

  evaluate.py pages PAGES OUT       pages as {"id", "html"} lines for `pipeline extract --jsonl-out`
  evaluate.py peer NAME PAGES OUT   run trafilatura or resiliparse on every page (one thread),
                                    writing {"id", "text", "seconds"} lines
  evaluate.py score PAGES NAME=OUT...   the table: F1 / precision / recall / empty pages /
                                    HTML MB/s per thread, overall, per language and per source
                                    of the ground truth
  evaluate.py warc PAGES OUT.warc.gz   the pages as a gzipped WARC of HTTP responses (one
                                    gzip member per record, as crawls are), for a whole
                                    `pipeline clean` run on them

Scoring is the article-extraction benchmark's: the text is cut into tokens (words, and every
CJK character alone), then into shingles of 4 tokens; precision and recall are the multiset
overlap of shingles of a page, averaged over pages, and F1 comes from those averages. A page
extracted as empty scores precision 0 and recall 0.
"""

import collections
import gzip
import json
import re
import sys
import time

TOKEN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]|[^\W_]+",
    re.UNICODE,
)


def tokens(text):
    return TOKEN.findall(text.lower())


def shingles(text, n=4):
    toks = tokens(text)
    if len(toks) < n:
        return collections.Counter([tuple(toks)] if toks else [])
    return collections.Counter(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))


def precision_recall(predicted, truth):
    p, t = shingles(predicted), shingles(truth)
    if not p or not t:
        return (0.0, 0.0) if t else (1.0, 1.0)
    overlap = sum((p & t).values())
    return overlap / sum(p.values()), overlap / sum(t.values())


def read_jsonl(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def cmd_pages(pages, out):
    with open(out, "w", encoding="utf-8") as f:
        for page in read_jsonl(pages):
            f.write(json.dumps({"id": page["id"], "html": page["html"]}, ensure_ascii=False) + "\n")


def cmd_peer(name, pages, out):
    if name == "trafilatura":
        import trafilatura

        def extract(html):
            return trafilatura.extract(html) or ""

    elif name == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        def extract(html):
            return extract_plain_text(HTMLTree.parse(html), main_content=True)

    else:
        raise SystemExit(f"unknown extractor {name}")
    with open(out, "w", encoding="utf-8") as f:
        for page in read_jsonl(pages):
            start = time.perf_counter()
            try:
                text = extract(page["html"])
            except Exception as e:  # one bad page is an empty page, not a failed run
                print(f"{name}: {page['id']}: {e}", file=sys.stderr)
                text = ""
            seconds = time.perf_counter() - start
            f.write(json.dumps({"id": page["id"], "text": text, "seconds": seconds}, ensure_ascii=False) + "\n")


def cmd_score(pages, runs):
    truth = {p["id"]: p for p in read_jsonl(pages)}
    langs = sorted({p["lang"] for p in truth.values()}, key=lambda l: (l != "latin", l))
    rows = []
    for run in runs:
        name, path = run.split("=", 1)
        got = {r["id"]: r for r in read_jsonl(path)}
        sources = sorted({p["source"] for p in truth.values()})
        for lang in ["all"] + langs + [f"source:{s}" for s in sources]:
            if lang.startswith("source:"):
                ids = [i for i, p in truth.items() if p["source"] == lang[len("source:"):]]
            else:
                ids = [i for i, p in truth.items() if lang == "all" or p["lang"] == lang]
            ps, rs, empty, secs, size = [], [], 0, 0.0, 0
            for i in ids:
                r = got.get(i, {"text": "", "seconds": 0.0})
                p, rcl = precision_recall(r["text"], truth[i]["text"])
                ps.append(p)
                rs.append(rcl)
                empty += not r["text"].strip()
                secs += r["seconds"]
                size += len(truth[i]["html"].encode("utf-8"))
            P, R = sum(ps) / len(ps), sum(rs) / len(rs)
            F = 2 * P * R / (P + R) if P + R else 0.0
            rows.append((name, lang, len(ids), F, P, R, empty, size / 1e6 / secs if secs else 0.0))
    print("| extractor | pages | F1 | precision | recall | extracted as empty | HTML MB/s, 1 thread |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, lang, n, F, P, R, empty, mbps in rows:
        if lang == "all":
            print(f"| {name} | {n} | {F:.3f} | {P:.3f} | {R:.3f} | {empty} | {mbps:.1f} |")
    print()
    for title, keep in (
        ("language", lambda l: l != "all" and not l.startswith("source:")),
        ("ground truth from", lambda l: l.startswith("source:")),
    ):
        print(f"| extractor | {title} | pages | F1 | precision | recall | extracted as empty |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, lang, n, F, P, R, empty, mbps in rows:
            if keep(lang):
                label = lang[len("source:"):] if lang.startswith("source:") else lang
                print(f"| {name} | {label} | {n} | {F:.3f} | {P:.3f} | {R:.3f} | {empty} |")
        print()


def cmd_warc(pages, out):
    import uuid

    with open(out, "wb") as f:
        for i, p in enumerate(read_jsonl(pages)):
            body = p["html"].encode("utf-8")
            http = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            url = p.get("url") or f"https://extract-eval.invalid/{p['id']}"
            head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {url}\r\n"
                    f"WARC-Date: 2026-01-01T00:00:00Z\r\n"
                    f"WARC-Record-ID: <urn:uuid:{uuid.UUID(int=i + 1)}>\r\n"
                    f"Content-Type: application/http; msgtype=response\r\n"
                    f"Content-Length: {len(http)}\r\n\r\n").encode()
            f.write(gzip.compress(head + http + b"\r\n\r\n", mtime=0))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "pages":
        cmd_pages(*args)
    elif cmd == "peer":
        cmd_peer(*args)
    elif cmd == "score":
        cmd_score(args[0], args[1:])
    elif cmd == "warc":
        cmd_warc(*args)
    elif cmd == "worst":
        # worst PAGES OUT [N]: the pages an extractor does worst on, for tuning
        truth = {p["id"]: p for p in read_jsonl(args[0])}
        got = {r["id"]: r for r in read_jsonl(args[1])}
        scored = []
        for i, p in truth.items():
            pr, rc = precision_recall(got.get(i, {"text": ""})["text"], p["text"])
            f = 2 * pr * rc / (pr + rc) if pr + rc else 0.0
            scored.append((f, pr, rc, i))
        for f, pr, rc, i in sorted(scored)[: int(args[2]) if len(args) > 2 else 20]:
            print(f"{f:.3f} P {pr:.3f} R {rc:.3f} {i}")
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
