"""MinHash signatures over character n-grams, and LSH banding by sorting (no per-document Python objects).

Character n-grams make near-duplicate detection work for Chinese, which has no spaces. Shingles are hashed with
a vectorised polynomial over code points and mixed by splitmix64; each of `num_perm` hash functions is a
multiply-shift of that 64-bit value. Banding sorts one band's keys at a time (numpy), so the index costs 8 bytes
per document per band being processed, not a dict entry per band as datasketch's MinHashLSH keeps — that is
why this is ours rather than datasketch's. Candidate pairs are confirmed by their signature agreement (an
estimate of Jaccard similarity) before they join a cluster, which keeps precision high.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_BASE = np.uint64(0x100000001B3)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, vectorised (uint64 arithmetic wraps, as intended)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """Distinct 64-bit hashes of the text's character n-grams (lower-cased, whitespace removed)."""
    cps = np.frombuffer("".join(text.lower().split()).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(cps) < n:
        cps = np.pad(cps, (0, n - len(cps)))
    with np.errstate(over="ignore"):
        h = np.zeros(len(cps) - n + 1, dtype=np.uint64)
        for k in range(n):
            h = h * _BASE + cps[k:len(cps) - n + 1 + k]
        return np.unique(_mix(h))


def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands*rows ≤ num_perm minimising false positives + false negatives around threshold
    (the integral of the LSH S-curve on either side, as in the MinHash LSH literature)."""
    xs = np.linspace(0, 1, 401)
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        r = num_perm // b
        prob = 1 - (1 - xs ** r) ** b
        fp = np.trapezoid(np.where(xs < threshold, prob, 0), xs)
        fn = np.trapezoid(np.where(xs >= threshold, 1 - prob, 0), xs)
        if fp + fn < best_err:
            best, best_err = (b, r), fp + fn
    return best


@dataclass
class MinHasher:
    num_perm: int = 112
    ngram: int = 5
    seed: int = 1

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.a = rng.integers(1, 2**63, self.num_perm, dtype=np.uint64) | np.uint64(1)  # odd multipliers
        self.b = rng.integers(0, 2**63, self.num_perm, dtype=np.uint64)

    def signature(self, text: str) -> np.ndarray:
        h = shingle_hashes(text, self.ngram)
        sig = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        with np.errstate(over="ignore"):
            for i in range(0, len(h), 4096):  # bounded temporaries for very long documents
                block = ((h[i:i + 4096, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32))
                np.minimum(sig, block.min(axis=0).astype(np.uint32), out=sig)
        return sig


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def cluster(sigs: np.ndarray, threshold: float, bands: int, rows: int) -> np.ndarray:
    """Cluster id (the smallest member index) for every signature row; a row in no cluster is its own id.

    sigs may be a memory-mapped array: one band's keys are read at a time."""
    n = len(sigs)
    parent = np.arange(n, dtype=np.int64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            cols = sigs[:, band * rows:(band + 1) * rows].astype(np.uint64)
            key = np.zeros(n, dtype=np.uint64)
            for c in range(rows):
                key = _mix(key * _BASE + cols[:, c])
            order = np.argsort(key, kind="stable")
            sorted_keys = key[order]
            same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
            for j in same:  # order[j+1] collides with order[j]: confirm by signature agreement
                a, b = int(order[j]), int(order[j + 1])
                ra, rb = _find(parent, a), _find(parent, b)
                if ra != rb and np.mean(sigs[a] == sigs[b]) >= threshold:
                    parent[max(ra, rb)] = min(ra, rb)
    return np.array([_find(parent, i) for i in range(n)], dtype=np.int64)
