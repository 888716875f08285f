#!/usr/bin/env python3
"""Stand-in annotators for the demo and the end-to-end test: they work through the labeler's
HTTP API exactly as the browser pages do (next task, submit with an Idempotency-Key, skip).

    python3 scripts/annotate_demo.py --labeler http://127.0.0.1:8080 --token TOKEN \
        --sft-project 1 --compare-project 2 [--rate-project 3] --prompts data/demo/prompts.jsonl \
        --log actions.json

SFT items: the annotator writes the reference answer from the prompts file (`meta.reference`),
and skips every 8th item. Comparisons: the answer closer to the reference (difflib ratio) is
better; "tie" when the two are equally close, "both_bad" when neither is close; every 10th is
skipped. Ratings (one answer each): thumbs up when the answer names the town asked about or
states its fact (`meta.town`, `meta.fact`: the river, dish, craft or century; a lenient
stand-in, as the demo's tiny model seldom gets both), down otherwise;
the aspect named by --aspect (the demo's `correctness`) gets 1-5 from the difflib ratio; every
12th is skipped. Every action is written to --log, so a test can check that the export holds exactly
these labels. Only the standard library is used.
"""

import argparse
import difflib
import json
import sys
import urllib.error
import urllib.request

MAX_TASKS = 10_000


def call(base, token, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {path}: HTTP {e.code}: {e.read().decode('utf-8', 'replace')}")


def similarity(a, b):
    return difflib.SequenceMatcher(None, a, b).ratio()


def judge(answers, reference):
    """(choice, shown index or None, strength)"""
    scores = [similarity(a["content"], reference) for a in answers[:2]]
    if max(scores) < 0.2:
        return "both_bad", None, None
    if abs(scores[0] - scores[1]) < 0.02:
        return "tie", None, None
    better = 0 if scores[0] > scores[1] else 1
    strength = "much" if abs(scores[0] - scores[1]) > 0.3 else "slightly"
    return ("a", "b")[better], better, strength


def normalized(text):
    return " ".join(text.lower().split())


def thumbs(answer, meta):
    """(label, correctness 1-5): up when the answer names the town asked about or states its
    fact (the prompt's `meta.town`, `meta.fact`), case and spacing ignored."""
    said = normalized(answer)
    label = any(meta.get(k) and normalized(meta[k]) in said for k in ("town", "fact"))
    return label, 1 + round(4 * similarity(answer, meta["reference"]))


def work(base, token, project, references, kind, skip_every, actions, progress, aspect=None,
         metas=None):
    done = 0
    # A progress line rewritten in place ("\r") only on a terminal: in a log each rewrite
    # would be kept.
    live = sys.stderr.isatty()
    for n in range(MAX_TASKS):
        status, task = call(base, token, "POST", f"/api/projects/{project}/next")
        if status == 204 or task is None:
            break
        external = task["external_id"]
        user_turns = [m["content"] for m in task["prompt"] if m["role"] == "user"]
        reference = references.get(external) or (user_turns and references.get(user_turns[-1]))
        assignment = task["assignment_id"]
        if reference is None or n % skip_every == skip_every - 1:
            call(base, token, "POST", f"/api/assignments/{assignment}/skip")
            actions.append({"project": project, "external_id": external, "action": "skip"})
            continue
        key = {"Idempotency-Key": f"demo-{project}-{assignment}"}
        if kind == "sft":
            body = {"answer": reference, "time_spent_ms": 1000 + 37 * n}
            call(base, token, "POST", f"/api/assignments/{assignment}/submit", body, key)
            actions.append({"project": project, "external_id": external, "action": "answer",
                            "answer": reference})
        elif kind == "rating":
            answer = task["answers"][0]["content"]
            label, correctness = thumbs(answer, metas[reference])
            body = {"label": label, "time_spent_ms": 1500 + 29 * n}
            if aspect:
                body["scores"] = {aspect: correctness}
            call(base, token, "POST", f"/api/assignments/{assignment}/submit", body, key)
            actions.append({"project": project, "external_id": external, "action": "thumb",
                            "label": label, "answer": answer})
        else:
            choice, better, strength = judge(task["answers"], reference)
            body = {"choice": choice, "time_spent_ms": 2000 + 41 * n}
            if strength:
                body["strength"] = strength
            call(base, token, "POST", f"/api/assignments/{assignment}/submit", body, key)
            action = {"project": project, "external_id": external, "action": "choice",
                      "choice": choice}
            if better is not None:
                action["chosen"] = task["answers"][better]["content"]
                action["rejected"] = task["answers"][1 - better]["content"]
            actions.append(action)
        done += 1
        if progress and live:
            print(f"\r  {kind}: {done} labelled", end="", file=sys.stderr, flush=True)
    if progress:
        # On a terminal this ends the progress line; in a log it is the project's one line.
        print("" if live else f"  {kind}: {done} labelled", file=sys.stderr)
    return done


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labeler", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--token", required=True, help="an annotator's API token (labeler token create)")
    ap.add_argument("--sft-project", type=int, help="SFT project id: write answers")
    ap.add_argument("--compare-project", type=int, help="preference project id: compare answers")
    ap.add_argument("--rate-project", type=int, help="rating project id: thumbs up / down")
    ap.add_argument("--aspect", help="a 1-5 aspect of the rating project to score (correctness)")
    ap.add_argument("--prompts", required=True, help="prompts JSONL with meta.reference")
    ap.add_argument("--log", help="write the actions taken here (JSON)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    references = {}
    metas = {}  # reference -> the prompt's meta (town, fact)
    with open(args.prompts, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                metas[row["meta"]["reference"]] = row["meta"]
                # By id (the SFT items keep it) and by prompt text (comparison items are
                # named after the labeler's item and the checkpoint that answered).
                references[row["id"]] = row["meta"]["reference"]
                references[row["prompt"]] = row["meta"]["reference"]
    base = args.labeler.rstrip("/")
    actions = []
    if args.sft_project is not None:
        work(base, args.token, args.sft_project, references, "sft", 8, actions, not args.quiet)
    if args.compare_project is not None:
        work(base, args.token, args.compare_project, references, "preference", 10, actions, not args.quiet)
    if args.rate_project is not None:
        work(base, args.token, args.rate_project, references, "rating", 12, actions,
             not args.quiet, args.aspect, metas)
    if args.log:
        with open(args.log, "w", encoding="utf-8") as f:
            json.dump(actions, f, ensure_ascii=False, indent=1)
    counts = {}
    for a in actions:
        k = {"choice": a.get("choice"), "thumb": "up" if a.get("label") else "down"}.get(a["action"], a["action"])
        counts[k] = counts.get(k, 0) + 1
    print("labelled: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), file=sys.stderr)


if __name__ == "__main__":
    main()
