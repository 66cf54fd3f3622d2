"""What a plain ``import numba_adam`` gives: every public name, nothing heavy, no side effects."""

import subprocess
import sys
import textwrap


def run(code):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_every_contract_name_is_reachable_after_a_plain_import():
    out = run("""
        import sys
        import numba_adam
        names = [numba_adam.ParamBuffer, numba_adam.Adam, numba_adam.AdamW,
                 numba_adam.compat.keras.Adam, numba_adam.compat.keras.legacy.Adam,
                 numba_adam.compat.mlx.Adam, numba_adam.compat.mlx.AdamW,
                 numba_adam.schedules.warmup_cosine_decay, numba_adam.IndexedSlices,
                 numba_adam.load_checkpoint, numba_adam.CheckpointError]
        print(len(names), "numba.cuda" in sys.modules, "numba_adam._cuda" in sys.modules,
              "mpi4py" in sys.modules)
    """)
    assert out.split() == ["11", "False", "False", "False"]   # no GPU or MPI until used
