"""Exact and near-duplicate detection: planted near copies (English and Chinese) are found with recall ≥ 0.95
and precision ≥ 0.99; exact dedup ignores case and whitespace when asked and keeps the first copy."""

from __future__ import annotations

import random

import numpy as np

from engine.data.minhash import MinHasher, cluster, optimal_bands, shingle_hashes
from engine.data.shard import exact_key
from tests.data.corpus import en_doc, near_copy, zh_doc


def test_shingles_work_without_spaces():
    assert len(shingle_hashes("今天天气很好", 5)) == 2
    assert len(shingle_hashes("ab", 5)) == 1  # shorter than n: one padded shingle, not an error
    assert np.array_equal(shingle_hashes("A b c", 2), shingle_hashes("abc", 2))


def test_signature_agreement_estimates_jaccard():
    hasher = MinHasher(num_perm=256)
    a = en_doc(random.Random(3))
    b = near_copy(random.Random(4), a, edits=10)
    sa, sb = set(shingle_hashes(a, 5).tolist()), set(shingle_hashes(b, 5).tolist())
    jaccard = len(sa & sb) / len(sa | sb)
    estimate = float(np.mean(hasher.signature(a) == hasher.signature(b)))
    assert abs(estimate - jaccard) < 0.1


def test_planted_near_duplicates_recall_and_precision():
    rng = random.Random(7)
    docs: list[str] = []
    origin: list[int] = []  # index of the document each one was copied from (itself for originals)
    for i in range(400):
        docs.append(en_doc(rng) if i % 2 else zh_doc(rng))
        origin.append(i)
    for _ in range(200):
        src = rng.randrange(400)
        docs.append(near_copy(rng, docs[src], edits=rng.randint(1, 4)))
        origin.append(src)
    order = list(range(len(docs)))
    rng.shuffle(order)
    docs = [docs[i] for i in order]
    origin_of = {new: order[new] for new in range(len(order))}
    truth = [origin[origin_of[i]] for i in range(len(docs))]  # the original's old index, per shuffled record

    hasher = MinHasher(num_perm=112, ngram=5)
    sigs = np.stack([hasher.signature(d) for d in docs])
    clusters = cluster(sigs, 0.8, *optimal_bands(0.8, 112))

    planted = {i for i in range(len(docs)) if origin_of[i] >= 400}
    found = {i for i in planted if clusters[i] == clusters[truth.index(truth[i])]}
    recall = len(found) / len(planted)
    predicted = [i for i in range(len(docs)) if clusters[i] != i]
    correct = [i for i in predicted if truth[i] == truth[int(clusters[i])]]
    precision = len(correct) / max(len(predicted), 1)
    assert recall >= 0.95, recall
    assert precision >= 0.99, precision


def test_exact_key_normalization():
    assert exact_key("Hello  World\n", True) == exact_key("hello world", True)
    assert exact_key("Hello World", False) != exact_key("hello world", False)
    assert exact_key("中文 文本", True) == exact_key("中文文本", True)
