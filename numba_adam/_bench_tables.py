"""Text tables of ``numba-adam bench``: rows grouped by case, shared by its sections."""

from __future__ import annotations

from typing import Any, Callable


def header(width: int) -> str:
    """The columns every case table starts with (``width``: the implementation column's)."""
    return f"{'case':<20} {'implementation':<{width}} {'ms/step':>9} {'GB/s':>6} "


def case_lines(rows: list[dict[str, Any]], width: int,
               cells: Callable[[dict[str, Any]], str]) -> list[str]:
    """One line per row: its case, implementation (``width`` wide), ms/step and GB/s, then
    ``cells(row)``; a blank line between cases."""
    lines: list[str] = []
    last = None
    for row in rows:
        if last and row["case"] != last:
            lines.append("")
        last = row["case"]
        lines.append(f"{row['case']:<20} {row['implementation']:<{width}} "
                     f"{row['median_seconds'] * 1e3:9.4f} {row['gb_per_s']:6.1f} {cells(row)}")
    return lines
