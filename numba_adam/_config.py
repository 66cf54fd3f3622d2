"""Compile-time settings shared by the CPU and CUDA kernels."""

# fastmath without "nnan"/"ninf": a NaN or Inf gradient must propagate into the
# parameters exactly as it does in PyTorch, so the compiler may not assume
# values are finite.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

# Below this many elements a serial loop beats waking the thread pool.
PARALLEL_MIN_ELEMENTS = 1 << 15

# Tensors are cut into work items of at most this many elements, so threads
# share big tensors and one item's loop stays long enough to vectorise.
WORK_ITEM_ELEMENTS = 1 << 15

# Threads per block for the CUDA kernels, and the most blocks a launch uses
# (blocks loop over work items, so any count covers everything).
CUDA_BLOCK_SIZE = 256
CUDA_MAX_BLOCKS = 4096

# Column layout of the per-group scalar table ("hyper"), one row per group,
# filled by the engine before each launch in the buffer's dtype.
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
HYPER_COLUMNS = 10

# Column layout of the tensor table (int64), one row per tensor.
PARAM_ADDR = 0     # address of the tensor's first element
GRAD_ADDR = 1      # address of its gradient's first element
STATE_OFFSET = 2   # offset of its m and v in the flat state buffers
VMAX_OFFSET = 3    # offset of its AMSGrad max in the flat v_max buffer, or -1
GROUP = 4          # row of the scalar table
SKIP = 5           # 1 when this step updates the tensor elsewhere (sparse rows)
TENSOR_COLUMNS = 6

# Column layout of the work-item table (int64): a range of one tensor.
ITEM_TENSOR = 0
ITEM_BEGIN = 1
ITEM_LENGTH = 2
ITEM_COLUMNS = 3
