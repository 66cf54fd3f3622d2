"""Numba intrinsics behind the compact state codes: float32 bit casts, and 32-bit IR twins
of the code functions.

LLVM IR, so they compile for the CPU and for CUDA alike.  ``_codes`` builds
its code functions over the bit casts; ``NATIVE`` holds IR twins of
``_codes``' hash, bfloat16 and 8-bit code functions, which keep every integer
operation 32 bits wide.  Numba's own integer arithmetic is 64-bit, which halves
the vector width and moves the loops' integer work into 64-bit lanes.  The
tests check the twins against ``_codes``' versions bit for bit.  Measured with
``tools/compare_trees.py --state-bits`` (3 alternating rounds, 2 threads),
the twins took the 16-bit step from 59 to 43 ms at 6e7 parameters and the
8-bit step from 73 to 45 ms.  The CUDA simulator, which runs Python, uses
``_codes``' versions over NumPy casts instead.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import _codes


@intrinsic
def float_bits(typingctx, x):
    """A float32's bit pattern as a non-negative int64 (a free bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.zext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return types.int64(types.float32), codegen


@intrinsic
def bits_float(typingctx, bits):
    """The float32 whose bit pattern is the low 32 bits of an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

    return types.float32(types.int64), codegen


def _mix(builder, x):
    """``_codes``' mixing rounds over an i32 Weyl value."""
    i32 = ir.IntType(32)
    for shift, multiplier in _codes.HASH_ROUNDS:
        x = builder.mul(builder.xor(x, builder.lshr(x, ir.Constant(i32, shift))),
                        ir.Constant(i32, multiplier))
    x = builder.xor(x, builder.lshr(x, ir.Constant(i32, _codes.HASH_LAST_SHIFT)))
    return builder.zext(x, ir.IntType(64))


@intrinsic
def random_bits(typingctx, key, index):
    """``_codes``' hash of (key, index), emitted as 32-bit integer code so it vectorises
    16 lanes wide (Numba's own integer arithmetic is 64-bit)."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        step = ir.Constant(i32, _codes.HASH_STEP)
        return _mix(builder, builder.add(builder.trunc(args[0], i32),
                                         builder.mul(builder.trunc(args[1], i32), step)))

    return types.int64(types.int64, types.int64), codegen


@intrinsic
def mix_bits(typingctx, weyl):
    """``_codes``' mix_bits in 32-bit lanes: the hash of a running Weyl value."""
    def codegen(context, builder, signature, args):
        return _mix(builder, builder.trunc(args[0], ir.IntType(32)))

    return types.int64(types.int64), codegen


@intrinsic
def bf16_decode(typingctx, code):
    """``_codes``' bf16_decode: the float32 value of a bfloat16 pattern (the low 16 bits)."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        low = builder.trunc(args[0], ir.IntType(16)) if args[0].type.width > 16 else args[0]
        high = builder.shl(builder.zext(low, i32), ir.Constant(i32, 16))
        return builder.bitcast(high, ir.FloatType())

    return types.float32(code), codegen


def _i32(builder, value):
    """An integer IR value as i32 (truncated or zero-extended)."""
    i32 = ir.IntType(32)
    width = value.type.width
    if width == 32:
        return value
    return builder.trunc(value, i32) if width > 32 else builder.zext(value, i32)


_FLOAT32_MAX = 3.4028234663852886e38


def _c32(value):
    return ir.Constant(ir.IntType(32), value)


@intrinsic
def bf16_encode(typingctx, x, random16):
    """``_codes``' bf16_encode in 32-bit lanes: ``(bits + random16) >> 16``, and for a NaN
    ``(bits | 0x400000) >> 16`` (its quiet pattern's top half: no add that could carry into
    its exponent or sign).  Infinities need no case: their low 16 bits are zero, so the add
    leaves them alone.  (Three vector operations before the shift; masking the NaN's low
    bits first cost one more per moment.)"""
    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ir.IntType(32))
        rounded = builder.add(bits, _i32(builder, args[1]))
        quiet = builder.or_(bits, _c32(0x400000))
        safe = builder.select(builder.fcmp_unordered("uno", args[0], args[0]), quiet, rounded)
        return builder.trunc(builder.lshr(safe, _c32(16)), ir.IntType(16))

    return types.uint16(types.float32, random16), codegen


def _maxnum(builder, x, floor):
    """``maxnum(x, floor)``: ``x`` for every number at or above ``floor``, ``floor`` for
    NaN (one vector max on the CPU).  Fast-math reassociation does not see through it, so
    it keeps an exact power-of-two multiply from being folded into a block scale (see
    ``_decode8``, ``_encode8``)."""
    f32 = ir.FloatType()
    maxnum = builder.module.declare_intrinsic("llvm.maxnum", [f32],
                                              ir.FunctionType(f32, [f32, f32]))
    return builder.call(maxnum, [x, ir.Constant(f32, floor)])


def _encode8(builder, magnitude, exponent_shift, largest):
    """Nearest 8-bit magnitude code (ties to even) of the float32 whose pattern is
    ``magnitude`` (|y|): ``_codes``' ``nearest8``.  |y| times ``2^-exponent_shift`` puts
    the code's exponent bias on float32's, so rounding the pattern's top bits to the
    3-bit mantissa gives the code, the evenly spaced codes (float32's subnormals) too:
    one path for every value.  The max with zero (NaN: code 0) keeps the multiply apart
    from the block scale's: folded into 1 / absmax, 2^-112 underflows."""
    f32 = ir.FloatType()
    absolute = _maxnum(builder, builder.bitcast(magnitude, f32), 0.0)
    scaled = builder.bitcast(builder.fmul(absolute, ir.Constant(f32, 2.0 ** -exponent_shift)),
                             ir.IntType(32))
    odd = builder.and_(builder.lshr(scaled, _c32(20)), _c32(1))
    code = builder.lshr(builder.add(builder.add(scaled, _c32(0x7FFFF)), odd), _c32(20))
    return builder.select(builder.icmp_unsigned("<", code, _c32(largest)), code,
                          _c32(largest))


def _decode8(builder, placed, exponent_shift, floor):
    """The float32 of an 8-bit code placed in a float32 pattern (``placed``, an i32: the
    magnitude code from bit 20, at bits 20-27 for v and 20-26 for m with m's sign at bit
    31), times ``2^exponent_shift``.  The
    pattern's exponent field is the code's, biased by 127 instead of the code's bias,
    and the codes' evenly spaced range (exponent field 0) lands on float32's subnormals,
    whose spacing continues the normal range's as the codes' does: one exact multiply
    decodes every code, with no compare, convert or select (vector multiplies take
    subnormal inputs at full speed on the CPU measured).  ``_maxnum`` with a ``floor``
    below every code's value changes no value and keeps the power of two out of the
    block scale (folded, 2^112 times an absmax above 2^16 overflows).  (A half-float
    conversion would decode m in fewer operations, but for some targets,
    ``NUMBA_CPU_NAME=generic`` among them, LLVM emits a library call that Numba leaves
    unlinked: the kernel crashed.)"""
    f32 = ir.FloatType()
    value = builder.fmul(builder.bitcast(placed, f32), ir.Constant(f32, 2.0 ** exponent_shift))
    return _maxnum(builder, value, floor)


@intrinsic
def m8_decode(typingctx, code):
    """``_codes``' m8_decode in 32-bit lanes.  The code sign-extended and shifted to bit
    20 has its sign at bit 31 and copies of it at bits 27-30, which one mask clears: the
    signed pattern in two operations (apart from the one unpacking instruction that
    loads it), where splitting sign and magnitude took five."""
    def codegen(context, builder, signature, args):
        width = args[0].type.width
        low = builder.trunc(args[0], ir.IntType(8)) if width > 8 else args[0]
        signed = builder.sext(low, ir.IntType(32))
        placed = builder.and_(builder.shl(signed, _c32(20)), _c32(0x87F00000))
        return _decode8(builder, placed, 127 - 15, -_FLOAT32_MAX)     # m's bias is 15

    return types.float32(code), codegen


@intrinsic
def v8_decode(typingctx, code):
    """``_codes``' v8_decode in 32-bit lanes."""
    def codegen(context, builder, signature, args):
        c = builder.and_(_i32(builder, args[0]), _c32(0xFF))
        return _decode8(builder, builder.shl(c, _c32(20)), 127 - 31, 0.0)   # v's bias is 31

    return types.float32(code), codegen


@intrinsic
def m8_encode(typingctx, y):
    """``_codes``' m8_encode in 32-bit lanes."""
    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ir.IntType(32))
        magnitude = builder.and_(bits, _c32(0x7FFFFFFF))
        code = _encode8(builder, magnitude, 127 - 15, _codes.M8_MAX)
        sign = builder.and_(builder.lshr(bits, _c32(24)), _c32(0x80))
        return builder.trunc(builder.or_(sign, code), ir.IntType(8))

    return types.uint8(types.float32), codegen


@intrinsic
def v8_encode(typingctx, y):
    """``_codes``' v8_encode in 32-bit lanes."""
    def codegen(context, builder, signature, args):
        magnitude = builder.and_(builder.bitcast(args[0], ir.IntType(32)), _c32(0x7FFFFFFF))
        code = _encode8(builder, magnitude, 127 - 31, _codes.V8_MAX)
        return builder.trunc(code, ir.IntType(8))

    return types.uint8(types.float32), codegen


@intrinsic
def zero_where_zero(typingctx, code, other):
    """``code`` (an 8-bit code) where ``other`` (another) is not 0, else 0, as
    ``min(code, other << 8)`` in 32-bit lanes.  LLVM narrows the plain select to the
    bytes stored, where its mask had to be packed down from the 32-bit comparison and
    blended: five vector operations per 8 elements against these two."""
    def codegen(context, builder, signature, args):
        a, b = _i32(builder, args[0]), _i32(builder, args[1])
        shifted = builder.shl(b, _c32(8))
        return builder.select(builder.icmp_unsigned("<", a, shifted), a, shifted)

    return types.uint32(code, other), codegen


@intrinsic
def magnitude_bits(typingctx, x):
    """``_codes``' magnitude_bits as an int32, so a block's maximum runs in 32-bit lanes."""
    def codegen(context, builder, signature, args):
        return builder.and_(builder.bitcast(args[0], ir.IntType(32)), _c32(0x7FFFFFFF))

    return types.int32(types.float32), codegen


NATIVE = {"random_bits": random_bits, "mix_bits": mix_bits, "bf16_decode": bf16_decode,
          "bf16_encode": bf16_encode, "m8_decode": m8_decode, "v8_decode": v8_decode,
          "m8_encode": m8_encode, "v8_encode": v8_encode, "magnitude_bits": magnitude_bits}



@intrinsic
def prefetch(typingctx, address):
    """Hint the CPU to fetch the cache line at ``address`` (an int64) for reading, into
    L2 (locality 2, ``prefetcht1``): the 8-bit loop prefetches ``PREFETCH_AHEAD`` elements
    ahead, 20 KB per thread of parameters, gradients and codes, which into the 32 KB L1
    (locality 3) evicted the chunk being worked on (6e7 parameters: 0.81-0.83 of the
    time with locality 3, two runs of compare_trees)."""
    def codegen(context, builder, signature, args):
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        builder.call(fn, [builder.inttoptr(args[0], i8p), ir.Constant(i32, 0),
                          ir.Constant(i32, 2), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(types.int64), codegen


# LLVM's tuning for Intel's AVX-512 servers (Skylake-X to Emerald Rapids) prefers 256-bit
# vectors; the low-bit loops do enough integer work per element that 512-bit ones pay.
WIDE_VECTORS = '"prefer-vector-width"="512"'


@intrinsic
def prefer_wide_vectors(typingctx):
    """Let LLVM vectorise the function this is called in with the widest vectors the target
    has (a no-op where 512-bit vectors are preferred already, or absent: Zen 4, AVX2).
    Only that function changes: the process's own Numba target, and so the user's own
    code, keeps its settings.  It emits no instruction.  (llvmlite's function attribute
    set takes no string attribute, so this one is added to the set beside its check.)"""
    def codegen(context, builder, signature, args):
        set.add(builder.function.attributes, WIDE_VECTORS)
        return context.get_dummy_value()

    return types.none(), codegen
