"""Numba intrinsics behind the compact state codes: float32 bit casts, and 32-bit IR for
the hash and the bfloat16 decoder.

LLVM IR, so they compile for the CPU and for CUDA alike.  ``_codes`` builds
its code functions over the bit casts; ``NATIVE`` holds IR twins of
``_codes``' ``random_bits`` and ``bf16_decode``, which keep every integer
operation 32 bits wide (Numba's own integer arithmetic is 64-bit, which halves
the vector width); the tests check them against ``_codes``' versions bit for
bit.  IR twins of ``bf16_encode`` and of the 8-bit codes were tried and left
out: faster with data in cache, but slower at DRAM sizes in single runs at
6e7 parameters on 2 threads (16-bit: 45 against 36 ms; 8-bit: 66 against
59 ms).  The CUDA simulator, which runs Python, uses ``_codes``' versions over
NumPy casts instead.
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


@intrinsic
def random_bits(typingctx, key, index):
    """``_codes``' hash of (key, index), emitted as 32-bit integer code so it vectorises
    16 lanes wide (Numba's own integer arithmetic is 64-bit)."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        step = ir.Constant(i32, _codes.HASH_STEP)
        x = builder.add(builder.trunc(args[0], i32), builder.mul(builder.trunc(args[1], i32), step))
        for shift, multiplier in _codes.HASH_ROUNDS:
            x = builder.mul(builder.xor(x, builder.lshr(x, ir.Constant(i32, shift))),
                            ir.Constant(i32, multiplier))
        x = builder.xor(x, builder.lshr(x, ir.Constant(i32, _codes.HASH_LAST_SHIFT)))
        return builder.zext(x, ir.IntType(64))

    return types.int64(types.int64, types.int64), codegen


@intrinsic
def bf16_decode(typingctx, code):
    """``_codes``' bf16_decode: the float32 value of a bfloat16 pattern (the low 16 bits)."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        low = builder.trunc(args[0], ir.IntType(16)) if args[0].type.width > 16 else args[0]
        high = builder.shl(builder.zext(low, i32), ir.Constant(i32, 16))
        return builder.bitcast(high, ir.FloatType())

    return types.float32(code), codegen


NATIVE = {"random_bits": random_bits, "bf16_decode": bf16_decode}



@intrinsic
def prefetch(typingctx, address):
    """Hint the CPU to fetch the cache line at ``address`` (an int64) for reading."""
    def codegen(context, builder, signature, args):
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        builder.call(fn, [builder.inttoptr(args[0], i8p), ir.Constant(i32, 0),
                          ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(types.int64), codegen
