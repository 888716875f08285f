"""The near-duplicate evaluation corpus of scripts/bench-dedup: Debian documentation and
fortunes in English and Chinese, the kind of text where MinHash goes wrong (short documents,
shared boilerplate, ANSI colour codes, near-identical manual pages), plus planted
near-duplicates whose true Jaccard similarity is known.

    python3 bench/dedup_corpus.py OUT_DIR [--seed 1]

Reads the installed files of fixed Debian packages (fortunes, fortunes-min, fortunes-zh,
manpages, manpages-dev, manpages-zh; scripts/bench-dedup installs them), so the corpus
depends only on those packages' versions, which it records. Writes OUT_DIR/corpus.jsonl
(`id`, `text`, `source`) and OUT_DIR/planted.jsonl (`a`, `b`, `jaccard`, `edit_rate`).

Planted pairs: a variant of a source document with a fraction of its tokens (words, or
characters for Chinese) replaced, deleted or inserted at random, from 1% to 40%, so the
pairs span Jaccard similarities from about 0.2 to 1. The similarity is measured, not assumed
(dedup_shingles.py, the scorer's shingles).
"""
import gzip
import json
import os
import random
import re
import subprocess
import sys

from dedup_shingles import is_chinese, jaccard, shingles

PACKAGES = ["fortunes", "fortunes-min", "fortunes-zh", "manpages", "manpages-dev", "manpages-zh"]
PLANTED = 600
EDIT_RATES = [0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.045, 0.06, 0.1]


def package_files(package):
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
    return sorted(p for p in out.splitlines() if os.path.isfile(p))


def package_version(package):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return out.stdout.strip() or "not installed"


def fortunes(path):
    """A fortune file: entries separated by lines holding a single %."""
    text = open(path, encoding="utf-8", errors="replace").read()
    for entry in re.split(r"\n%\n", text):
        entry = entry.strip("\n")
        if entry.strip() and entry.strip() != "%":
            yield entry


TROFF_ESCAPES = re.compile(r"\\f[BIRPC]|\\f\(..|\\f\[[^\]]*\]|\\[&/,:%]|\\s[+-]?\d|\\\*\(..|\\\*.")


def man_text(path):
    """A manual page's troff source as plain text: requests dropped, arguments of the
    text-carrying ones (.SH, .B, .I, .TP lines...) kept, font escapes removed."""
    raw = gzip.open(path, "rb").read().decode("utf-8", errors="replace")
    lines = []
    for line in raw.splitlines():
        if line.startswith(".\\\"") or line.startswith("'\\\""):
            continue
        if line.startswith(".so "):
            return ""  # a redirect to another page, not a document
        if line.startswith("."):
            parts = line.split(None, 1)
            request = parts[0][1:]
            if request in ("SH", "SS", "B", "I", "BR", "IR", "RB", "BI", "IB", "RI") and len(parts) > 1:
                line = parts[1].replace('"', "")
            else:
                continue
        line = TROFF_ESCAPES.sub("", line).replace("\\-", "-").replace("\\e", "\\").replace("\\(em", "—")
        lines.append(line)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def documents():
    for package in PACKAGES:
        for path in package_files(package):
            name = os.path.basename(path)
            if "/games/fortunes/" in path and "." not in name:
                for i, entry in enumerate(fortunes(path)):
                    yield f"{package}:{name}:{i}", entry
            elif "/man/" in path and path.endswith(".gz"):
                text = man_text(path)
                if text:
                    yield f"{package}:{os.path.relpath(path, '/usr/share/man')}", text


def variant(text, rate, rng):
    """The text with about `rate` of its tokens edited: Chinese by character, otherwise by
    whitespace-separated word (whitespace kept)."""
    zh = is_chinese(text)
    tokens = list(text) if zh else re.split(r"(\s+)", text)
    vocab = [t for t in tokens if t.strip()] or ["x"]
    out = []
    for tok in tokens:
        if not tok.strip():
            out.append(tok)
            continue
        r = rng.random()
        if r < rate / 3:
            continue  # deletion
        if r < 2 * rate / 3:
            out.append(rng.choice(vocab))  # substitution
            continue
        out.append(tok)
        if r < rate:
            out.append(("" if zh else " ") + rng.choice(vocab))  # insertion
    return "".join(out)


def main():
    out_dir = sys.argv[1]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1
    rng = random.Random(seed)
    os.makedirs(out_dir, exist_ok=True)
    docs = list(documents())
    # Sources for planted pairs: documents long enough to carry a few shingles.
    candidates = [i for i, (_, t) in enumerate(docs) if len(shingles(t)) >= 20]
    sources = rng.sample(candidates, min(PLANTED, len(candidates)))
    planted = []
    for n, i in enumerate(sources):
        doc_id, text = docs[i]
        rate = EDIT_RATES[n % len(EDIT_RATES)]
        new = variant(text, rate, rng)
        new_id = f"planted:{n}:{doc_id}"
        docs.append((new_id, new))
        planted.append({"a": doc_id, "b": new_id, "jaccard": round(jaccard(shingles(text), shingles(new)), 4), "edit_rate": rate})
    # Planted variants go to random places, not next to their source.
    order = list(range(len(docs)))
    rng.shuffle(order)
    with open(os.path.join(out_dir, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for i in order:
            doc_id, text = docs[i]
            f.write(json.dumps({"id": doc_id, "text": text, "source": doc_id.split(":")[0]}, ensure_ascii=False) + "\n")
    with open(os.path.join(out_dir, "planted.jsonl"), "w") as f:
        for p in planted:
            f.write(json.dumps(p) + "\n")
    with open(os.path.join(out_dir, "packages.json"), "w") as f:
        json.dump({p: package_version(p) for p in PACKAGES}, f, indent=1)
    zh = sum(is_chinese(t) for _, t in docs)
    print(f"{len(docs)} documents ({zh} Chinese), {len(planted)} planted near-duplicates -> {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
