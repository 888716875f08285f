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

With --crawl-mix the corpus's documents are 12% of the pages, as the documents a crawl
keeps are: RefinedWeb's pipeline (Penedo et al., 2023) removes almost 90% of Common Crawl's
documents, about half of them on language. The other pages are generated beside each corpus
document, as long as its prose: half of all pages in languages the default `langid.keep`
drops (German, French, Spanish, Russian word salad), the rest (38%) low quality the default
filters drop (a paragraph repeated, or a navigation list), each with its own text so that
none is a duplicate of another.

    python3 bench/warc_corpus.py CORPUS.jsonl OUT_DIR FILES [MARKUP_RATIO] [--crawl-mix]

Prints the text bytes, the WARC bytes and their ratio.
"""

import gzip
import html
import json
import os
import random
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


# Common words of the languages a crawl holds beside the kept ones.
FOREIGN = {
    "deu": """der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es
        an werden aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum
        war haben nur oder aber vor zur bis mehr durch man sein wurde sei Stadt Haus Jahr Zeit Welt""",
    "fra": """le de un être et à il avoir ne je son que se qui ce dans en du elle au pour pas que vous
        par sur faire plus dire me on mon lui nous comme mais pouvoir avec tout y aller voir bien où
        sans tu ou leur homme si deux mari moi vouloir te femme venir quand grand celui notre""",
    "spa": """el la de que y a en un ser se no haber por con su para como estar tener le lo todo pero
        más hacer o poder decir este ir otro ese si me ya ver porque dar cuando él muy sin vez mucho
        saber qué sobre mi alguno mismo yo también hasta año dos querer entre así primero desde""",
    "rus": """и в не на я быть он с что а по это она этот к но они мы как из у который то за свой
        что весь год от так о для ты же все тот мочь вы человек такой его сказать только или ещё бы
        себя один как уже до время если сам когда другой вот говорить наш мой знать стать при""",
}


def prose(rng, vocabulary):
    """Paragraphs of sentences of random words, as long as bench/gen_corpus.py's English."""
    paras = []
    for _ in range(rng.randint(3, 9)):
        sents = []
        for _ in range(rng.randint(3, 7)):
            s = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(8, 22)))
            sents.append(s[0].upper() + s[1:] + ".")
        paras.append(" ".join(sents))
    return "\n\n".join(paras)


def dropped_pages(rng, english):
    """The pages generated beside one corpus document: on average 25/6 foreign ones and 19/6
    low-quality ones (with the document: 12% corpus, 50% foreign, 38% low quality)."""
    languages = sorted(FOREIGN)
    words = {lang: FOREIGN[lang].split() for lang in languages}
    foreign = low = 0.0
    while True:
        foreign += 25 / 6
        low += 19 / 6
        out = []
        while foreign >= 1:
            foreign -= 1
            out.append(prose(rng, words[rng.choice(languages)]))
        while low >= 1:
            low -= 1
            if rng.random() < 0.5:
                para = prose(rng, english).split("\n\n")[0]
                out.append("\n\n".join([para] * rng.randint(6, 12)))
            else:
                items = ["Home", "About us", "Contact", "Login", "Cart", "Privacy policy", "Search",
                         "Terms", "Careers", "Blog", "Help", "Sitemap"]
                out.append("\n".join(rng.choice(items) + f" {rng.randrange(10**6)}" for _ in range(rng.randint(20, 60))))
        yield out


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
    args = [a for a in sys.argv[1:] if a != "--crawl-mix"]
    crawl_mix = len(args) < len(sys.argv) - 1
    corpus, out_dir, files = args[0], args[1], int(args[2])
    ratio = int(args[3]) if len(args) > 3 else 19
    os.makedirs(out_dir, exist_ok=True)
    shell = shells()
    with open(corpus, encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    if crawl_mix:
        rng = random.Random(1)
        english = sorted({w for d in docs[:200] for w in d["text"].split() if w.isascii() and w.isalpha()})
        extra = dropped_pages(rng, english)
        mixed = []
        for doc in docs:
            mixed.append(doc)
            for k, text in enumerate(next(extra)):
                mixed.append({"id": f"{doc['id']}-crawl-{k}", "text": text})
        docs = mixed
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
