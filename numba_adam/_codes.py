"""The compact state codes: bfloat16 with stochastic rounding, and the 8-bit block codes.

Written once, as scalar functions over integers and float32 values, like
``_formula``.  A backend builds them with :func:`make_codecs`, handing in its
compiler (``njit`` or ``cuda.jit(device=True)``) and its two bit casts
between a float32 and its 32-bit pattern (an LLVM bitcast when compiled,
NumPy views under the CUDA simulator).  Bit patterns travel as non-negative
int64 values, so every integer operation is signed 64-bit arithmetic: no
unsigned/signed mixing that Numba would promote to float64.

**16-bit state** stores the upper half of the float32 pattern (bfloat16).
Rounding adds 16 random bits below the kept half before truncating, so a
value rounds up with probability equal to its distance from the lower
neighbour: the stored moments are unbiased.  Nearest rounding would cancel
every update smaller than half a bfloat16 step (2^-9 relative), which is
what ``v = 0.999 v + 0.001 g^2`` does for most elements.  The random bits are
a hash of (seed, the group's step, the element's index in the optimizer), so
they do not depend on threads, device or where a run was resumed.

**8-bit state** (code version 1) quantizes blocks of ``BLOCK`` elements
against the block's absolute maximum (a float32 scale per block).  The code
of ``y = x / absmax`` (|y| <= 1) is float-like, so relative precision is the
same at every magnitude and zero is exact:

* ``exp_avg`` (signed): sign bit, 4 exponent bits, 3 mantissa bits.  Codes
  with exponent field E >= 1 are ``2^(E-15) * (1 + M/8)``, E = 0 gives
  ``M * 2^-17``; the largest code used is 1.0 (magnitude code 120).
* ``exp_avg_sq`` and ``max_exp_avg_sq`` (unsigned): 5 exponent bits, 3
  mantissa bits, ``2^(E-31) * (1 + M/8)`` and ``M * 2^-33``; largest code
  1.0 (248).  The wider exponent covers the square of the first moment's
  range.

Why not bitsandbytes' dynamic tree map: measured with
``tools/compare_8bit_codes.py`` (log-uniform values below the block maximum),
these codes keep the relative error under 6% (99th percentile) over 4
decades below the block maximum for m and 8 for v (23% at 10 for v), where
the tree map's 99th percentile grows from 9% to 67% over 2 to 6 decades for
m and it flushes 15% of v to zero at 8 decades.  The tree map reaches deeper for m (a few per cent of
values 6 decades down, which these codes flush to zero) and is finer within
one decade of the maximum.  It also needs a 256-entry search to encode; these
codes take a few integer operations that vectorise.

Encoding rounds to nearest (ties to even), the evenly spaced codes too; a NaN (whose
block's absmax is NaN, so it decodes as NaN) gets code 0.  An element whose second moment
(the denominator) encodes to zero stores a zero first moment as well, so a
tiny v can never leave ``m / (sqrt(v) + eps)`` at ``m / eps`` (the "eps
blow-up" of affine 8-bit maps).
"""

from __future__ import annotations

import numpy as np

BLOCK = 256                 # elements per 8-bit block (one float32 absmax each)
CODE_VERSION = 1            # of the 8-bit codes, stored in checkpoints
M8_MAX = 120                # magnitude code of 1.0 in the signed code
V8_MAX = 248                # code of 1.0 in the unsigned code
M8_TINY = np.float32(2.0 ** -17)
V8_TINY = np.float32(2.0 ** -33)
M8_DOWN = np.float32(2.0 ** -112)    # |y| times these: the code's exponent bias on float32's
V8_DOWN = np.float32(2.0 ** -96)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


# The 32-bit hash behind the random bits ("lowbias32", by C. Wellons, after a Weyl step):
# x = key + index * HASH_STEP, then for each (shift, multiplier): x ^= x >> shift;
# x *= multiplier (mod 2^32), and a last x ^= x >> HASH_LAST_SHIFT.  Targets may compile
# it from these constants directly (the CPU emits 32-bit vector code from them).
HASH_STEP = 0x9E3779B1
HASH_ROUNDS = ((16, 0x7FEB352D), (15, 0x846CA68B))
HASH_LAST_SHIFT = 16


def shifted_key(key, first):
    """The key whose hash of (it, i) is the hash of (``key``, ``first`` + i): the Weyl step is
    linear, so a loop over one range hashes from one 32-bit start and a 32-bit index (a
    64-bit ``first + i`` per element would halve the CPU's vector width)."""
    return (key + (first & 0xFFFFFFFF) * HASH_STEP) & 0xFFFFFFFF


CODECS = ("random_bits", "bf16_decode", "bf16_encode", "m8_decode", "v8_decode", "m8_encode",
          "v8_encode", "magnitude_bits", "inverse_scale", "mix_bits")


def make_codecs(jit, float_bits, bits_float, float32, native=None):
    """The code functions compiled with ``jit``, over the target's bit casts.

    ``float_bits(x)``: a float32's pattern as an int64 in [0, 2^32);
    ``bits_float(b)``: the float32 whose pattern is ``b``'s low 32 bits;
    ``float32(x)``: the target's cast to float32.  ``native``: a dict name -> the
    target's own compilation of some of these functions, bit for bit the same (the CPU
    emits 32-bit integer IR for the hash and the bfloat16 codes: Numba's integer
    arithmetic is 64-bit, which halves the vector width).
    Returns the compiled functions, in the order of ``CODECS`` (kernels call them by
    global name, so a backend unpacks them into its module).
    """

    (s1, k1), (s2, k2) = HASH_ROUNDS

    @jit
    def mix_bits(weyl):
        """The hash's mixing rounds over the low 32 bits of a Weyl value ``key + index *
        HASH_STEP``: a loop over consecutive indices may keep that value as a running sum
        (one add per element, no multiply) and mix it."""
        x = weyl & 0xFFFFFFFF
        x = ((x ^ (x >> s1)) * k1) & 0xFFFFFFFF
        x = ((x ^ (x >> s2)) * k2) & 0xFFFFFFFF
        return x ^ (x >> HASH_LAST_SHIFT)

    @jit
    def hash_bits(key, index):
        """32 well-mixed bits from a 32-bit key and an element index (see ``HASH_*``)."""
        return mix_bits(key + (index & 0xFFFFFFFF) * HASH_STEP)

    random_bits = hash_bits

    @jit
    def bf16_decode(code):
        """The float32 value of a bfloat16 pattern."""
        return bits_float((code & 0xFFFF) << 16)

    @jit
    def bf16_encode(x, random16):
        """``x`` (a float32) to bfloat16, rounded up with probability of its remainder."""
        bits = float_bits(x)
        if (bits & 0x7F800000) == 0x7F800000:      # Inf stays Inf, NaN stays NaN
            return (bits >> 16) | (0x40 if (bits & 0x7FFFFF) != 0 else 0)
        return (bits + random16) >> 16

    @jit
    def m8_decode(code):
        """The value in [-1, 1] of a signed 8-bit code (times the block's absmax)."""
        mag = code & 0x7F
        value = bits_float((mag + 896) << 20) if mag >= 8 else float32(mag) * M8_TINY
        return -value if code & 0x80 else value

    @jit
    def v8_decode(code):
        """The value in [0, 1] of an unsigned 8-bit code (times the block's absmax)."""
        return bits_float((code + 768) << 20) if code >= 8 else float32(code & 0xFF) * V8_TINY

    @jit
    def nearest8(y, down, largest):
        """Nearest magnitude code (ties to even) of |y| <= 1: |y| times ``down`` (2^-112
        for m, 2^-96 for v) carries the code's exponent bias onto float32's, so rounding
        that float32's pattern to 3 mantissa bits is the code, the evenly spaced codes
        (float32's subnormals, on the same grid) included.  NaN gives code 0."""
        a = abs(y)
        a = a if a >= _ZERO else _ZERO
        scaled = float_bits(float32(a * down))
        return min((scaled + 0x7FFFF + ((scaled >> 20) & 1)) >> 20, largest)

    @jit
    def m8_encode(y):
        """Nearest signed 8-bit code of a float32 ``y`` in [-1, 1]."""
        return ((float_bits(y) >> 24) & 0x80) | nearest8(y, M8_DOWN, M8_MAX)

    @jit
    def v8_encode(y):
        """Nearest unsigned 8-bit code of a float32 ``y`` in [0, 1]."""
        return nearest8(y, V8_DOWN, V8_MAX)

    @jit
    def magnitude_bits(x):
        """|x|'s pattern: its maximum over a block is the pattern of the absmax (NaN wins)."""
        return float_bits(x) & 0x7FFFFFFF

    @jit
    def inverse_scale(absmax_bits):
        """1 / absmax for encoding (0 for an all-zero block), and absmax itself."""
        absmax = bits_float(absmax_bits)
        return (_ONE / absmax if absmax_bits != 0 else _ZERO), absmax

    compiled = dict(random_bits=random_bits, bf16_decode=bf16_decode, bf16_encode=bf16_encode,
                    m8_decode=m8_decode, v8_decode=v8_decode, m8_encode=m8_encode,
                    v8_encode=v8_encode, magnitude_bits=magnitude_bits,
                    inverse_scale=inverse_scale, mix_bits=mix_bits)
    compiled.update(native or {})
    return tuple(compiled[name] for name in CODECS)


def group_key(seed: int, step: int) -> int:
    """The 32-bit random key of one group's update number ``step`` (a splitmix64 mix)."""
    z = (seed * 0x9E3779B97F4A7C15 + step * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019)
    z &= (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & 0xFFFFFFFF


# -- NumPy versions, for tests, state_dict conversions and checkpoint checks -------------
def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.int64)


def _floats(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.float32)


def bf16_to_float(codes: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 patterns (uint16)."""
    return _floats(np.asarray(codes, np.int64) << 16)


def float_to_bf16(x: np.ndarray, random16: np.ndarray | int = 0x8000) -> np.ndarray:
    """bfloat16 patterns of ``x``; ``random16`` are the rounding bits (0x8000: nearest-ish)."""
    bits = _bits(x)
    special = (bits & 0x7F800000) == 0x7F800000
    nan = np.where((bits & 0x7FFFFF) != 0, 0x40, 0)
    out = np.where(special, (bits >> 16) | nan, (bits + np.asarray(random16, np.int64)) >> 16)
    return out.astype(np.uint16)


def m8_to_float(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes, np.int64)
    mag = codes & 0x7F
    value = np.where(mag >= 8, _floats((mag + 896) << 20), mag * M8_TINY).astype(np.float32)
    return np.where(codes & 0x80, -value, value)


def v8_to_float(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes, np.int64)
    return np.where(codes >= 8, _floats((codes + 768) << 20), codes * V8_TINY).astype(
        np.float32)


def _nearest8(y: np.ndarray, down: np.float32, largest: int) -> np.ndarray:
    a = np.abs(np.asarray(y, np.float32))
    scaled = _bits(np.where(a >= 0, a, np.float32(0)) * down)      # NaN: code 0
    return np.minimum((scaled + 0x7FFFF + ((scaled >> 20) & 1)) >> 20, largest)


def float_to_m8(y: np.ndarray) -> np.ndarray:
    bits = _bits(y)
    return (((bits >> 24) & 0x80) | _nearest8(y, M8_DOWN, M8_MAX)).astype(np.uint8)


def float_to_v8(y: np.ndarray) -> np.ndarray:
    return _nearest8(y, V8_DOWN, V8_MAX).astype(np.uint8)


def blocks(n: int) -> int:
    """Number of 8-bit blocks that hold ``n`` elements."""
    return -(-n // BLOCK)


def quantize8(x: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(codes, absmax per block) of a flat float array, as the kernels store them."""
    x = np.asarray(x, np.float32).ravel()
    padded = np.zeros(blocks(x.size) * BLOCK, np.float32)
    padded[:x.size] = x
    absmax = np.abs(padded.reshape(-1, BLOCK)).max(axis=1) if padded.size else \
        np.zeros(0, np.float32)
    inverse = np.divide(np.float32(1), absmax, out=np.zeros_like(absmax), where=absmax != 0)
    y = (padded.reshape(-1, BLOCK) * inverse[:, None]).ravel()[:x.size]
    return (float_to_m8(y) if signed else float_to_v8(y)), absmax.astype(np.float32)


def dequantize8(codes: np.ndarray, absmax: np.ndarray, signed: bool) -> np.ndarray:
    """Flat float32 values of 8-bit codes and their block scales."""
    codes = np.asarray(codes).ravel()
    values = m8_to_float(codes) if signed else v8_to_float(codes)
    return values * np.repeat(np.asarray(absmax, np.float32), BLOCK)[:codes.size]
