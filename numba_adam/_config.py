"""Compile-time settings and table column names shared by the CPU and CUDA kernels."""

# fastmath without "nnan"/"ninf": a NaN or Inf gradient must propagate into the
# parameters exactly as it does in PyTorch, so the compiler may not assume
# values are finite.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Tensors are cut into work items of at most this many elements, so threads
# share big tensors and one item's loop stays long enough to vectorise.  Smaller
# items made threaded steps slower on a 2-core VM (2.6e5 elements: 63 us with
# 32k items, 69 with 8k, 73 with 4k).
WORK_ITEM_ELEMENTS = 1 << 15

# Threads per block for the CUDA kernels, and the most blocks a launch uses
# (blocks loop over work items, so any count covers everything).
CUDA_BLOCK_SIZE = 256
CUDA_MAX_BLOCKS = 4096

# Columns of the group-scalar table: one row per parameter group, computed by
# ``_formula.group_scalars`` once per step, stored in the buffer's dtype.
GRAD_SIGN = 0      # -1 when maximizing, else 1
L2 = 1             # torch-style weight decay added to the gradient
DECAY = 2          # parameter multiplier: 1 - lr*wd when decoupled, else 1
ONE_MINUS_BETA1 = 3
BETA2 = 4
ONE_MINUS_BETA2 = 5
STEP_SIZE = 6
DENOM_SCALE = 7
EPS = 8
CLIP_VALUE = 9     # gradients are clamped to [-CLIP_VALUE, CLIP_VALUE] (inf: off)
FLUSH_BELOW = 10   # moments smaller in magnitude are stored as zero (_formula.SMALLEST_MOMENT)
SCALAR_COLUMNS = 11

# Columns of the tensor table (int64), one row per tensor.  Where a tensor's
# parameter and gradient are: on the CPU a memory address (so scattered plain
# arrays share one launch), on CUDA an element offset into the tensor's
# storage (a ParamBuffer's flat data, or the plain array itself).
PARAM_AT = 0
GRAD_AT = 1
STATE_OFFSET = 2   # element offset of its m in its format's state array (see _layout)
VMAX_OFFSET = 3    # element offset of its AMSGrad max, or -1
GROUP = 4          # row of the group-scalar table
SKIP = 5           # 1 when this step updates the tensor elsewhere (sparse rows)
V_OFFSET = 6       # element offset of its v
STATE_BITS = 7     # 32, 16 or 8: how its state is stored
INDEX_BASE = 8     # index of its first element among all the optimizer's elements
TENSOR_COLUMNS = 9

# Elements per chunk of 16-bit state decoded into float scratch at a time (a
# multiple of the 8-bit block, which it equals for 8-bit state).
STATE_CHUNK = 256

# Columns of the work-item table (int64): a range of one tensor.
ITEM_TENSOR = 0
ITEM_BEGIN = 1
ITEM_LENGTH = 2
ITEM_COLUMNS = 3
