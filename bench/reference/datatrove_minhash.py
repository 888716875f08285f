"""Reference for scripts/bench-dedup: HuggingFace datatrove's four MinHash stages (its
defaults: word 5-grams of the simplified text, 14 buckets x 8 hashes, 32-bit hashes) on the
evaluation corpus, writing the ids of the documents it keeps, one per line. Run from the
venv scripts/bench-dedup makes:
    python bench/reference/datatrove_minhash.py CORPUS.jsonl WORKDIR KEPT_IDS
"""
import json
import os
import shutil
import sys
import time

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter


def main():
    corpus, work, kept_path = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data = os.path.dirname(os.path.abspath(corpus))
    name = os.path.basename(corpus)
    config = MinhashConfig()
    sigs, buckets, clusters, out = (os.path.join(work, d) for d in ["sigs", "buckets", "clusters", "kept"])

    def run(pipeline, tasks=1):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1,
                              logging_dir=os.path.join(work, f"logs-{time.time()}")).run()

    start = time.time()
    reader = lambda: JsonlReader(data, glob_pattern=name)
    run([reader(), MinhashDedupSignature(output_folder=sigs, config=config)])
    run([MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=config)], tasks=config.num_buckets)
    run([MinhashDedupCluster(input_folder=buckets, output_folder=clusters, config=config)])
    run([reader(), MinhashDedupFilter(input_folder=clusters), JsonlWriter(out, compression=None)])
    seconds = time.time() - start
    kept = []
    for f in sorted(os.listdir(out)):
        with open(os.path.join(out, f), encoding="utf-8") as fh:
            kept.extend(json.loads(line)["id"] for line in fh)
    with open(kept_path, "w") as fh:
        fh.write("\n".join(kept) + "\n")
    print(f"datatrove minhash: kept {len(kept)} in {seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
