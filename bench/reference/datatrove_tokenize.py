"""Reference for scripts/bench-tokenize: HuggingFace datatrove's DocumentTokenizer with the
same tokenizer.json on the same JSONL corpus, 2 workers (the corpus split in 2 files so both
work). Documents are not shuffled (our side does not shuffle either), which only makes
datatrove faster. Prints seconds, MB/s and tokens/s. Run it from a scratch venv with
datatrove installed:
    python bench/reference/datatrove_tokenize.py CORPUS.jsonl TOKENIZER.json WORKDIR
"""
import glob
import os
import shutil
import sys
import time

import numpy as np
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.tokens import DocumentTokenizer

from datatrove_input import split_for_two_workers


def main():
    corpus, tokenizer, work = sys.argv[1], sys.argv[2], sys.argv[3]
    shutil.rmtree(work, ignore_errors=True)
    size_mb = os.path.getsize(corpus) / 1e6
    split_dir = split_for_two_workers(corpus, work)

    out = os.path.join(work, "tokens")
    start = time.time()
    LocalPipelineExecutor(
        pipeline=[
            JsonlReader(split_dir),
            DocumentTokenizer(
                output_folder=out,
                tokenizer_name_or_path=tokenizer,
                eos_token="<|endoftext|>",
                shuffle_documents=False,
            ),
        ],
        tasks=2,
        workers=2,
        logging_dir=os.path.join(work, "logs"),
    ).run()
    seconds = time.time() - start
    token_size = 2 if os.path.getsize(tokenizer) and _vocab(tokenizer) <= 65536 else 4
    tokens = sum(os.path.getsize(p) for p in glob.glob(os.path.join(out, "*.ds"))) // token_size
    print(
        f"datatrove DocumentTokenizer (2 workers): {seconds:.1f} s, {size_mb / seconds:.2f} MB/s, "
        f"{tokens} tokens, {tokens / seconds:,.0f} tokens/s"
    )


def _vocab(path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path).get_vocab_size()


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
