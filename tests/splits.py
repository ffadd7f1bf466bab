"""How the sans-IO parser tests cut their input: whole, byte by byte, or at seeded random splits."""

from __future__ import annotations

import random

MAX_RANDOM_CUTS = 24


def pieces(data: bytes, mode: str, rng: random.Random) -> list[bytes]:
    """`data` in pieces: mode "whole", "bytes", or anything else for random cuts drawn from rng."""
    if mode == "whole" or len(data) < 2:
        return [data]
    if mode == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, MAX_RANDOM_CUTS))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
