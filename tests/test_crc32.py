"""The threaded CRC-32 equals zlib.crc32 of the whole range, for any split."""

import zlib

from hypothesis import given, strategies as st

from numba_adam import _crc32


@given(a=st.binary(max_size=300), b=st.binary(max_size=300), seed=st.integers(0, 2**32 - 1))
def test_combine_equals_the_crc_of_the_concatenation(a, b, seed):
    start = zlib.crc32(a, seed)
    assert _crc32.combine(start, zlib.crc32(b), len(b)) == zlib.crc32(b, start)


@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 2000), max_size=6),
       head=st.binary(max_size=20))
def test_chunked_crc_equals_zlib(data, cuts, head):
    edges = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    chunks = [(hi - lo, lambda lo=lo, hi=hi: data[lo:hi]) for lo, hi in zip(edges, edges[1:])]
    assert _crc32.crc32_chunks(chunks, zlib.crc32(head)) == zlib.crc32(head + data)


def test_long_lengths_combine_exactly():
    block = bytes(range(256)) * 4096            # 1 MiB
    whole = zlib.crc32(block * 3)
    crc = _crc32.combine(zlib.crc32(block), zlib.crc32(block * 2), 2 * len(block))
    assert crc == whole
