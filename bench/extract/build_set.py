"""Builds data/extract-eval/pages.jsonl.gz, the extraction evaluation set, from the test pages
that two permissively licensed projects ship with full ground truth (see SOURCES.md there):

  mozilla/readability   test/test-pages/*/source.html + expected.html (Apache-2.0)
  newspaper4k           tests/data/html/*.html + tests/data/txt/*.txt (MIT)

Both repositories are read from bare git mirrors (python3 build_set.py READABILITY_GIT
NEWSPAPER4K_GIT OUT). Synthetic fixtures (a readability test of one HTML feature, under 8 KB
of source) and pages without ground truth are left out. Each line of the output is
{"id", "source", "lang", "url", "html", "text"}; html is the page decoded to Unicode (its
charset is already applied, so a reader must treat it as UTF-8), text the ground truth as
plain text, one paragraph per line.
"""

import gzip
import json
import re
import subprocess
import sys
from html.parser import HTMLParser

BLOCK = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table",
    "section", "article", "main", "blockquote", "pre", "dd", "dt", "dl", "figcaption", "hr",
    "td", "th", "address", "figure", "header", "footer", "caption",
}
SKIP = {"script", "style", "noscript", "template"}
# Pages of the newspaper4k set that are not one article or that repeat another page.
NEWSPAPER_SKIP = {"video_article_01", "cnn_summary"}


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


def decode(raw):
    """The page as Unicode: its <meta> charset, else UTF-8, else GB18030."""
    m = re.search(rb'<meta[^>]+charset\s*=\s*["\']?\s*([A-Za-z0-9_\-]+)', raw[:4096], re.I)
    for enc in ([m.group(1).decode()] if m else []) + ["utf-8", "gb18030"]:
        try:
            return raw.decode(enc)
        except (LookupError, UnicodeDecodeError):
            continue
    return raw.decode("utf-8", "replace")


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


def readability_pages(repo):
    base = "test/test-pages"
    for name in git(repo, "ls-tree", "--name-only", f"HEAD:{base}").decode().split():
        try:
            raw = git(repo, "show", f"HEAD:{base}/{name}/source.html")
            expected = git(repo, "show", f"HEAD:{base}/{name}/expected.html").decode()
        except subprocess.CalledProcessError:
            continue
        if len(raw) < 8000:
            continue
        meta = {}
        try:
            meta = json.loads(git(repo, "show", f"HEAD:{base}/{name}/expected-metadata.json"))
        except (subprocess.CalledProcessError, ValueError):
            pass
        if meta.get("readerable") is False:
            continue
        text = html_text(expected)
        yield {"id": f"readability/{name}", "source": "readability", "url": None,
               "html": decode(raw), "text": text}


def newspaper_pages(repo):
    names = git(repo, "ls-tree", "--name-only", "HEAD:tests/data/txt").decode().split()
    htmls = set(git(repo, "ls-tree", "--name-only", "HEAD:tests/data/html").decode().split())
    for txt in names:
        name = txt[: -len(".txt")]
        if name in NEWSPAPER_SKIP or f"{name}.html" not in htmls:
            continue
        raw = git(repo, "show", f"HEAD:tests/data/html/{name}.html")
        text = git(repo, "show", f"HEAD:tests/data/txt/{txt}").decode()
        lines = (re.sub(r"\s+", " ", l).strip() for l in text.split("\n"))
        yield {"id": f"newspaper4k/{name}", "source": "newspaper4k", "url": None,
               "html": decode(raw), "text": "\n".join(l for l in lines if l)}


def main():
    readability, newspaper, out = sys.argv[1:4]
    n = 0
    by_lang = {}
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as f:
        for page in list(readability_pages(readability)) + list(newspaper_pages(newspaper)):
            if not page["text"].strip():
                continue
            page["lang"] = lang_of(page["text"])
            f.write(json.dumps(page, ensure_ascii=False) + "\n")
            n += 1
            by_lang[page["lang"]] = by_lang.get(page["lang"], 0) + 1
    print(f"{n} pages: {by_lang}")


if __name__ == "__main__":
    main()
