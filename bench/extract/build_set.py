"""Builds data/extract-eval/pages.jsonl.gz, the extraction evaluation set, from the pages that
three permissively licensed projects ship with full ground truth (see SOURCES.md there):

  mozilla/readability   test/test-pages/*/source.html + expected.html (Apache-2.0)
  newspaper4k           tests/data/html/*.html + tests/data/txt/*.txt (MIT)
  immortal-autumn/Chinese-Web-Content-Extraction-Dataset
                        original/*.html + cleaned/*.txt, hand-extracted Chinese pages (MIT)

The repositories are read from git clones or bare mirrors, each at the commit pinned in
COMMITS (python3 build_set.py READABILITY_GIT NEWSPAPER4K_GIT ZH_DATASET_GIT OUT), so the set
is the same whatever the clones' HEAD. Synthetic fixtures (a readability test of one HTML
feature, under 8 KB of source) and pages without ground truth are left out. Each line of the output is
{"id", "source", "lang", "url", "html", "text"}; html is the page decoded to Unicode (its
charset is already applied, so a reader must treat it as UTF-8), text the ground truth as
plain text, one paragraph per line.
"""

import gzip
import io
import json
import re
import subprocess
import sys
import tomllib
from html.parser import HTMLParser
from pathlib import Path

BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
    "section", "article", "main", "blockquote", "pre", "dd", "dt", "dl", "figcaption", "hr",
    "td", "th", "address", "figure", "header", "footer", "caption",
}
SKIP = {"script", "style", "noscript", "template"}
# Pages of the newspaper4k set that are not one article or that repeat another page.
NEWSPAPER_SKIP = {"video_article_01", "cnn_summary"}
# The commit of each source the set is built from (SOURCES.md names the same ones).
COMMITS = {
    "readability": "ab4027a8b37669745016869a37a504727992b2ba",
    "newspaper4k": "540bff3e8344cb8291c4829fafd98860f30d9692",
    "zh-extraction": "99d0ef08419109b5489b12e38f771f25b952d774",
}
# Hand checks of the Chinese dataset's ground truth: pages left out, ground truths cut.
FIXES = str(Path(__file__).resolve().parents[2] / "data/extract-eval/zh-extraction-fixes.toml")
# The crawler's wrapper around most pages of the Chinese dataset: <text id="URL" title=".."
# encoding=".."> ... </text>. It is not part of the page: it is cut off and its URL kept.
CRAWL_WRAPPER = re.compile(rb'\A\s*<text id="([^"]*)"[^>]*>')


class TextOf(HTMLParser):
    """Plain text of an HTML fragment: block elements end a line."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in SKIP:
            self.skip += 1
        elif tag in BLOCK:
            self.out.append("\n")
        elif tag in ("td", "th"):
            self.out.append(" ")

    def handle_endtag(self, tag):
        if tag in SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)

    def text(self):
        lines = (re.sub(r"\s+", " ", l).strip() for l in "".join(self.out).split("\n"))
        return "\n".join(l for l in lines if l)


def html_text(html):
    parser = TextOf()
    parser.feed(html)
    parser.close()
    return parser.text()


def git(repo, *args):
    return subprocess.run(["git", "--git-dir", repo, *args], check=True, capture_output=True).stdout


def show(repo, source, path):
    """A file of `source`'s repository at its pinned commit."""
    return git(repo, "show", f"{COMMITS[source]}:{path}")


def ls(repo, source, path):
    return git(repo, "ls-tree", "--name-only", f"{COMMITS[source]}:{path}").decode().split()


def git_dir(path):
    """A bare mirror as given, or the .git directory of a working clone."""
    out = subprocess.run(["git", "-C", path, "rev-parse", "--git-dir"], check=True,
                         capture_output=True, text=True).stdout.strip()
    return out if out.startswith("/") else f"{path}/{out}"


# GB2312 and GBK pages often hold a few characters only GB18030 (their superset) has.
GB = {"gb2312", "gbk", "x-gbk", "gb_2312-80", "euc-cn"}


def decode(raw, declared=None):
    """The page as Unicode: the charset it declares (`declared`, else its <meta>), else UTF-8,
    else GB18030; a page that is valid in none is read as its declared GB charset (or UTF-8)
    with the few bad bytes replaced."""
    if declared is None:
        m = re.search(rb'<meta[^>]+charset\s*=\s*["\']?\s*([A-Za-z0-9_\-]+)', raw[:4096], re.I)
        declared = m.group(1).decode() if m else None
    if declared and declared.lower() in GB:
        declared = "gb18030"
    for enc in ([declared] if declared else []) + ["utf-8", "gb18030"]:
        try:
            return raw.decode(enc)
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("gb18030" if declared == "gb18030" else "utf-8", "replace")


def lang_of(text):
    """latin/zh/ja/ko/other from the ground truth's script (latin: mostly English)."""
    counts = {"ko": 0, "ja": 0, "han": 0, "latin": 0, "other": 0}
    for ch in text:
        o = ord(ch)
        if 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF:
            counts["ko"] += 1
        elif 0x3040 <= o <= 0x30FF:
            counts["ja"] += 1
        elif 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF:
            counts["han"] += 1
        elif ch.isascii() and ch.isalpha():
            counts["latin"] += 1
        elif ch.isalpha():
            counts["other"] += 1
    total = sum(counts.values()) or 1
    if counts["ko"] / total > 0.2:
        return "ko"
    if counts["ja"] / total > 0.1:
        return "ja"
    if counts["han"] / total > 0.2:
        return "zh"
    if counts["latin"] / total > 0.8:
        return "latin"
    return "other"


def plain_lines(text):
    lines = (re.sub(r"\s+", " ", l).strip() for l in text.split("\n"))
    return "\n".join(l for l in lines if l)


def readability_pages(repo):
    base = "test/test-pages"
    for name in ls(repo, "readability", base):
        try:
            raw = show(repo, "readability", f"{base}/{name}/source.html")
            expected = show(repo, "readability", f"{base}/{name}/expected.html").decode()
        except subprocess.CalledProcessError:
            continue
        if len(raw) < 8000:
            continue
        meta = {}
        try:
            meta = json.loads(show(repo, "readability", f"{base}/{name}/expected-metadata.json"))
        except (subprocess.CalledProcessError, ValueError):
            pass
        if meta.get("readerable") is False:
            continue
        text = html_text(expected)
        yield {"id": f"readability/{name}", "source": "readability", "url": None,
               "html": decode(raw), "text": text}


def newspaper_pages(repo):
    names = ls(repo, "newspaper4k", "tests/data/txt")
    htmls = set(ls(repo, "newspaper4k", "tests/data/html"))
    for txt in names:
        name = txt[: -len(".txt")]
        if name in NEWSPAPER_SKIP or f"{name}.html" not in htmls:
            continue
        raw = show(repo, "newspaper4k", f"tests/data/html/{name}.html")
        text = show(repo, "newspaper4k", f"tests/data/txt/{txt}").decode()
        yield {"id": f"newspaper4k/{name}", "source": "newspaper4k", "url": None,
               "html": decode(raw), "text": plain_lines(text)}


def zh_extraction_pages(repo, fixes):
    """The Chinese dataset: original/UUID.html with its main text copied out by hand into
    cleaned/UUID.txt. Most pages sit in a crawler's <text id=URL encoding=..> wrapper, which
    is cut off (its URL and charset kept). `fixes` (zh-extraction-fixes.toml) leaves out the
    pages whose ground truth did not hold up against the HTML and cuts the ones that run on
    past the article."""
    for txt in ls(repo, "zh-extraction", "cleaned"):
        name = txt[: -len(".txt")]
        if name in fixes["exclude"]:
            continue
        raw = show(repo, "zh-extraction", f"original/{name}.html")
        url, declared = None, None
        wrapper = CRAWL_WRAPPER.match(raw)
        if wrapper:
            url = wrapper.group(1).decode("ascii", "replace")
            enc = re.search(rb'encoding="([A-Za-z0-9_\-]+)"', wrapper.group(0))
            declared = enc.group(1).decode() if enc else None
            raw = raw[wrapper.end():].rstrip()
            if raw.endswith(b"</text>"):
                raw = raw[: -len(b"</text>")]
        html = decode(raw, declared)
        text = plain_lines(show(repo, "zh-extraction", f"cleaned/{txt}").decode("utf-8"))
        if name in fixes["cut_from"]:
            lines = text.split("\n")
            cut = fixes["cut_from"][name]
            if cut not in lines:
                raise SystemExit(f"{FIXES}: cut_from.{name}: no ground-truth line {cut!r}")
            text = "\n".join(lines[: lines.index(cut)])
        yield {"id": f"zh-extraction/{name}", "source": "zh-extraction", "url": url,
               "html": html, "text": text}


def read_fixes():
    with open(FIXES, "rb") as f:
        fixes = tomllib.load(f)
    unknown = set(fixes) - {"exclude", "cut_from"}
    if unknown:
        raise SystemExit(f"{FIXES}: unknown table(s) {sorted(unknown)} (exclude, cut_from)")
    return {"exclude": fixes.get("exclude", {}), "cut_from": fixes.get("cut_from", {})}


def main():
    if len(sys.argv) != 5:
        raise SystemExit("usage: build_set.py READABILITY_GIT NEWSPAPER4K_GIT ZH_DATASET_GIT OUT")
    readability, newspaper, zh, out = sys.argv[1:5]
    readability, newspaper, zh = git_dir(readability), git_dir(newspaper), git_dir(zh)
    pages = (list(readability_pages(readability)) + list(newspaper_pages(newspaper))
             + list(zh_extraction_pages(zh, read_fixes())))
    n = 0
    by_lang = {}
    # No file name and mtime 0 in the gzip header: the same sources give the same bytes.
    with open(out, "wb") as raw, \
            gzip.GzipFile("", "wb", compresslevel=9, fileobj=raw, mtime=0) as gz, \
            io.TextIOWrapper(gz, encoding="utf-8") as f:
        for page in pages:
            if not page["text"].strip():
                continue
            page["lang"] = lang_of(page["text"])
            f.write(json.dumps(page, ensure_ascii=False) + "\n")
            n += 1
            by_lang[page["lang"]] = by_lang.get(page["lang"], 0) + 1
    print(f"{n} pages: {by_lang}")


if __name__ == "__main__":
    main()
