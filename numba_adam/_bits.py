"""Numba intrinsics behind the compact state codes: float32 bit casts and the 32-bit hash.

LLVM IR, so they compile for the CPU and for CUDA alike; ``_codes`` builds its
code functions over them (the CUDA simulator, which runs Python, uses the
NumPy casts there instead).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
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
