"""Reference for scripts/bench-pipeline: HuggingFace datatrove running the same Gopher,
C4 and FineWeb filters, then its four MinHash stages, on the same JSONL corpus, with 2
workers. Prints MB/s for each part (PART: filters, minhash or both, the default). Run it
from a scratch venv with datatrove installed (scripts/bench-pipeline makes one):
    python bench/reference/datatrove_filters.py CORPUS.jsonl WORKDIR [PART]
"""
import os
import shutil
import sys
import time

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from datatrove_input import split_for_two_workers

def main():
    corpus, work = sys.argv[1], sys.argv[2]
    part = sys.argv[3] if len(sys.argv) > 3 else "both"
    assert part in ("filters", "minhash", "both"), f"PART must be filters, minhash or both, not {part}"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    size_mb = os.path.getsize(corpus) / 1e6
    split_dir = split_for_two_workers(corpus, work)

    def run(pipeline, tasks=2):
        start = time.time()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=2, logging_dir=os.path.join(work, f"logs-{time.time()}")).run()
        return time.time() - start

    total = 0.0
    if part != "minhash":
        total += run_filters(run, split_dir, work, size_mb)
    if part != "filters":
        total += run_minhash(run, split_dir, work, size_mb)
    if part == "both":
        print(f"datatrove both: {total:.1f} s, {size_mb / total:.2f} MB/s")


def run_filters(run, split_dir, work, size_mb):
    filters = run([
        JsonlReader(split_dir),
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(),
        FineWebQualityFilter(),
        JsonlWriter(os.path.join(work, "filtered")),
    ])
    print(f"datatrove filters (Gopher+C4+FineWeb): {filters:.1f} s, {size_mb / filters:.2f} MB/s")
    return filters


def run_minhash(run, split_dir, work, size_mb):
    config = MinhashConfig()
    sigs, buckets, clusters, out = (os.path.join(work, d) for d in ["sigs", "buckets", "clusters", "dedup"])
    t = run([JsonlReader(split_dir), MinhashDedupSignature(output_folder=sigs, config=config)])
    t += run([MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=config)], tasks=config.num_buckets)
    t += run([MinhashDedupCluster(input_folder=buckets, output_folder=clusters, config=config)], tasks=1)
    t += run([JsonlReader(split_dir), MinhashDedupFilter(input_folder=clusters), JsonlWriter(out)])
    print(f"datatrove minhash (4 stages): {t:.1f} s, {size_mb / t:.2f} MB/s")
    return t


if __name__ == "__main__":
    main()
