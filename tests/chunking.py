"""Cutting bytes into pieces the way a network might: shared by the chunk-boundary tests."""

from __future__ import annotations

from collections.abc import Iterable


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at each position in ``cuts`` (taken modulo its length + 1)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces
