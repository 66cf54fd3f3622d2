"""CRC-32 (zlib's) of large byte ranges on several threads, joined exactly.

``zlib.crc32`` releases the GIL, so chunks hash in parallel; ``combine`` joins
the CRCs of two adjacent pieces into the CRC of their concatenation (the
GF(2) polynomial arithmetic of zlib's ``crc32_combine``), so the result is
bit-for-bit ``zlib.crc32`` of the whole range.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

_POLY = 0xEDB88320   # reflected CRC-32 polynomial
CHUNK = 8 << 20
MAX_THREADS = 4


def _multiply(a: int, b: int) -> int:
    """a * b modulo the CRC polynomial (bit-reflected representation)."""
    product, bit = 0, 1 << 31
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _powers() -> list[int]:
    """x^(2^k) modulo the polynomial for k = 0..31."""
    table, p = [], 1 << 30   # x^1
    for _ in range(32):
        table.append(p)
        p = _multiply(p, p)
    return table


_X_TO_2_TO_K = _powers()


def combine(crc1: int, crc2: int, length2: int) -> int:
    """CRC-32 of A + B from crc32(A), crc32(B) and len(B)."""
    shift, k, n = 1 << 31, 3, length2   # x^(8 * length2): 2^3 bits per byte
    while n:
        if n & 1:
            shift = _multiply(_X_TO_2_TO_K[k & 31], shift)
        n >>= 1
        k += 1
    return _multiply(shift, crc1) ^ crc2


def threads() -> int:
    """Threads worth using: the CPUs this process may run on, at most MAX_THREADS."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, available))


def crc32_chunks(chunks: Iterable[tuple[int, Callable[[], bytes | memoryview]]],
                 crc: int = 0) -> int:
    """``crc`` extended by the chunks in order; each chunk is (length, read) and ``read()``
    returns its bytes (called on a worker thread, so it may read a file)."""
    chunks = list(chunks)
    if len(chunks) < 2 or threads() == 1:
        for _, read in chunks:
            crc = zlib.crc32(read(), crc)
        return crc
    with ThreadPoolExecutor(threads()) as pool:
        for (length, _), part in zip(chunks, pool.map(lambda c: zlib.crc32(c[1]()), chunks)):
            crc = combine(crc, part, length)
    return crc
