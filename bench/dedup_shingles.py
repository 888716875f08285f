"""Shingles and Jaccard similarity as the near-duplicate evaluation measures them (issue 19):
on the raw text, character 5-grams for Chinese (whitespace ignored), whitespace-separated
word 5-grams otherwise. A text shorter than five tokens is one shingle."""
import re

N = 5
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def is_chinese(text):
    """More than a fifth of the non-space characters are CJK ideographs."""
    chars = [c for c in text if not c.isspace()]
    return bool(chars) and len(CJK.findall(text)) > len(chars) / 5


def shingles(text):
    tokens = [c for c in text if not c.isspace()] if is_chinese(text) else text.split()
    if not tokens:
        return set()
    sep = "" if is_chinese(text) else " "
    if len(tokens) < N:
        return {sep.join(tokens)}
    return {sep.join(tokens[i:i + N]) for i in range(len(tokens) - N + 1)}


def jaccard(a, b):
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
