"""Shared by the datatrove references: datatrove spreads work by input file, so the JSONL
corpus is split into 2 files for its 2 workers to share."""
import os


def split_for_two_workers(corpus, work):
    """Writes CORPUS as WORK/input/part0.jsonl and part1.jsonl; returns that folder."""
    split_dir = os.path.join(work, "input")
    os.makedirs(split_dir)
    with open(corpus, encoding="utf-8") as f:
        lines = f.readlines()
    half = len(lines) // 2
    for i, part in enumerate([lines[:half], lines[half:]]):
        with open(os.path.join(split_dir, f"part{i}.jsonl"), "w", encoding="utf-8") as out:
            out.writelines(part)
    return split_dir
