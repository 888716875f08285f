"""Scores a near-duplicate removal against the truth of the corpus (scripts/bench-dedup):

    python3 bench/dedup_score.py CORPUS_DIR KEPT_IDS NAME [--false-removals OUT.jsonl]

KEPT_IDS has the ids of the documents a run kept, one per line; every other document of
CORPUS_DIR/corpus.jsonl counts as removed as a duplicate (filters are off in these runs).
Prints one line:
  recall     planted pairs with true Jaccard >= 0.8 of which at least one side was removed;
  precision  removals for which some kept document has Jaccard >= 0.5 (a removal with no
             such document lost text that exists nowhere else in the output).
Jaccard as dedup_shingles.py measures it. The search for a kept document is exact: a prefix-
filtered set-similarity join (two sets with Jaccard >= t share one of their rarest
|s| - ceil(t |s|) + 1 shingles), so no pair is missed and no sampling is involved.
"""
import json
import math
import os
import sys
from collections import Counter, defaultdict

from dedup_shingles import jaccard, shingles

RECALL_AT = 0.8
PRECISION_AT = 0.5


def load(corpus_dir):
    docs = {}
    with open(os.path.join(corpus_dir, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs[d["id"]] = d["text"]
    planted = [json.loads(l) for l in open(os.path.join(corpus_dir, "planted.jsonl"))]
    return docs, planted


def best_kept_match(removed, kept, sets):
    """For each removed id: (best Jaccard with a kept document, that document), where a
    Jaccard below PRECISION_AT is reported as found only if the join happens to see it."""
    df = Counter()
    for s in sets.values():
        df.update(s)
    # Shingles as integers ordered by rarity (then by value, for a total order).
    rank = {sh: i for i, sh in enumerate(sorted(df, key=lambda sh: (df[sh], sh)))}
    ordered = {i: sorted(rank[sh] for sh in s) for i, s in sets.items()}

    def prefix(i):
        s = ordered[i]
        return s[: len(s) - math.ceil(PRECISION_AT * len(s)) + 1]

    index = defaultdict(list)
    for k in kept:
        for sh in prefix(k):
            index[sh].append(k)
    out = {}
    for r in removed:
        a = sets[r]
        best, best_id = 0.0, None
        seen = set()
        for sh in prefix(r):
            for k in index.get(sh, ()):
                if k in seen:
                    continue
                seen.add(k)
                b = sets[k]
                if not (PRECISION_AT * len(a) <= len(b) <= len(a) / PRECISION_AT):
                    continue
                j = jaccard(a, b)
                if j > best:
                    best, best_id = j, k
        out[r] = (best, best_id)
    return out


def main():
    corpus_dir, kept_path, name = sys.argv[1:4]
    false_out = sys.argv[sys.argv.index("--false-removals") + 1] if "--false-removals" in sys.argv else None
    docs, planted = load(corpus_dir)
    kept = {l.strip() for l in open(kept_path) if l.strip()}
    unknown = kept - docs.keys()
    if unknown:
        sys.exit(f"{kept_path}: {len(unknown)} ids not in the corpus, e.g. {sorted(unknown)[:3]}")
    removed = [i for i in docs if i not in kept]
    sets = {i: shingles(t) for i, t in docs.items()}

    pairs = [p for p in planted if p["jaccard"] >= RECALL_AT]
    found = sum(1 for p in pairs if p["a"] not in kept or p["b"] not in kept)
    matches = best_kept_match(removed, kept, sets)
    good = sum(1 for j, _ in matches.values() if j >= PRECISION_AT)
    recall = found / len(pairs) if pairs else float("nan")
    precision = good / len(removed) if removed else float("nan")
    print(f"{name:<10} removed {len(removed):>6} of {len(docs)}   recall (planted J>={RECALL_AT}) "
          f"{100 * recall:5.1f}% ({found}/{len(pairs)})   precision (kept J>={PRECISION_AT}) "
          f"{100 * precision:5.1f}% ({good}/{len(removed)})")
    if false_out:
        with open(false_out, "w", encoding="utf-8") as f:
            for r, (j, k) in sorted(matches.items(), key=lambda x: x[1][0]):
                if j < PRECISION_AT:
                    f.write(json.dumps({"removed": r, "best_kept": k, "jaccard": round(j, 4),
                                        "text": docs[r][:400], "kept_text": docs[k][:400] if k else None},
                                       ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
