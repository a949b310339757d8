"""Every derived seed of a run comes from here: one function, named by purpose, round, index.

A run has one seed (`loop.seed`). Each use of randomness (sampling failures, clustering,
a teacher request, a generation job, training) gets its own seed derived from it by hashing
(seed, purpose, round, index), so two purposes never collide (with arithmetic formulas, seed s
at round r+1 could equal seed s+1 at round r) and the value is the same in every process
(unlike the built-in hash() of a string, which is salted per process).
"""

from __future__ import annotations

import hashlib

SEED_RANGE = 2**31  # what every consumer accepts: numpy, torch, llama.cpp, random


def derive(seed: int, purpose: str, round_: int = 0, index: int = 0) -> int:
    """A seed in [0, 2**31) for one purpose; seed 0 is as valid as any other."""
    if seed < 0 or round_ < 0 or index < 0:
        raise ValueError(f"seeds, rounds and indices are >= 0 (got {seed}, {round_}, {index})")
    key = f"pada-local/{seed}/{purpose}/{round_}/{index}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") % SEED_RANGE
