"""tools/loop_cost.py finds the vector element loops in Numba's assembly dump."""

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "loop_cost", Path(__file__).resolve().parents[1] / "tools" / "loop_cost.py")
loop_cost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(loop_cost)

DUMP = """\
------------------------------ASSEMBLY _items32------------------------------
\tmovq\t%rdi, %rax
.LBB0_1:
\txorl\t%ecx, %ecx
.LBB0_2:
\tvmovups\t(%r11,%rcx,4), %ymm1
\tvmulps\t%ymm1, %ymm1, %ymm2
\tvsqrtps\t%ymm2, %ymm2
\tvmovups\t%ymm2, (%r10,%rcx,4)
\taddq\t$8, %rcx
\tcmpq\t%rcx, %rax
\tjne\t.LBB0_2
\tdecq\t%rdx
\tjne\t.LBB0_1
.LBB0_3:
\tvmovss\t(%r11,%rcx,4), %xmm1
\tvandps\t%xmm0, %xmm1, %xmm1
\tvmovss\t%xmm1, (%r10,%rcx,4)
\tincq\t%rcx
\tcmpq\t%rcx, %rax
\tjne\t.LBB0_3
.LBB0_4:
\tvaddps\t(%rdi), %ymm0, %ymm0
\taddq\t$32, %rdi
\tcmpq\t%rdi, %rax
\tjne\t.LBB0_4
"""


def test_finds_the_innermost_vector_loops_and_their_element_steps():
    loops = loop_cost.innermost_loops(DUMP)
    # not the outer loop around the first, nor the scalar remainder loop
    assert [(name, len(body)) for name, body, _ in loops] == [("_items32", 7), ("_items32", 4)]
    (_, indexed, indexed_elements), (_, pointers, pointer_elements) = loops
    assert indexed[0].startswith("vmovups") and indexed[-1].startswith("jne")
    assert indexed_elements == loop_cost.elements_per_pass(indexed) == 8
    assert pointer_elements is loop_cost.elements_per_pass(pointers) is None   # counts bytes


@pytest.mark.skipif(loop_cost.find_mca() is None, reason="llvm-mca is not installed")
def test_models_a_loop_with_llvm_mca():
    (_, body, _), _ = loop_cost.innermost_loops(DUMP)
    cycles = loop_cost.mca_cycles(body, "znver3")
    assert cycles is not None and 1.0 < cycles < 100.0


def test_picks_the_newest_versioned_llvm_mca_on_path(tmp_path, monkeypatch):
    for name in ("llvm-mca-14", "llvm-mca-19", "llvm-mca-9"):
        tool = tmp_path / name
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    loop_cost.find_mca.cache_clear()
    try:
        assert loop_cost.find_mca() == str(tmp_path / "llvm-mca-19")
    finally:
        monkeypatch.undo()
        loop_cost.find_mca.cache_clear()
