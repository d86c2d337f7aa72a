"""The one table printer: rows of cells as aligned columns, plain (the terminal) or Markdown
(report.md and the docs)."""

from __future__ import annotations

from collections.abc import Sequence


def table(rows: Sequence[Sequence[str]], *, markdown: bool = False, right: Sequence[int] = ()) -> str:
    """`rows[0]` is the header in Markdown; columns in `right` are right-aligned. Plain columns are
    two spaces apart and the last one is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def cell(i: int, text: str) -> str:
        if not markdown and i == len(widths) - 1 and i not in right:
            return text
        return text.rjust(widths[i]) if i in right else text.ljust(widths[i])

    lines = [[cell(i, text) for i, text in enumerate(row)] for row in rows]
    if not markdown:
        return "\n".join("  ".join(line) for line in lines)
    out = ["| " + " | ".join(line) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def print_rows(rows: Sequence[tuple[str, str]]) -> None:
    """Named values, one per line, the names aligned."""
    print(table(rows))
