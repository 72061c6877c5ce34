"""Tables and files for the reports of ``evaluate`` and ``demo``.

Plain functions over lists of rows: a Markdown table (for ``summary.md`` and the README), a
plain aligned table (for the terminal), number formatting that keeps NaN and infinity
visible, and CSV/JSON writers that keep non-finite values readable by ``csv``/``json`` readers.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ctxseg.errors import os_error_at


def format_value(value: Any, digits: int = 4) -> str:
    """One table cell: floats to ``digits`` decimals, ``nan`` and ``inf`` spelled out.

    Args:
        value: a number, ``None`` (shown as ``-``) or anything with ``str``.
        digits: decimals for floats.

    Returns:
        The cell text.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}f}"
    return str(value)


def _cells(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int) -> list[list[str]]:
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {i} has {len(row)} cells, expected {len(headers)}: {row!r}")
    return [[format_value(v, digits) for v in row] for row in rows]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A GitHub Markdown table; the first column left-aligned, the others right-aligned.

    Args:
        headers: column titles.
        rows: one sequence of cells per row, as long as ``headers``.
        digits: decimals for floats.

    Returns:
        The table, lines joined by newlines, no trailing newline.

    Raises:
        ValueError: a row of the wrong length.
    """
    cells = _cells(headers, rows, digits)
    align = [":--"] + ["--:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """A space-aligned table for the terminal (first column left, the others right).

    Args:
        headers: column titles.
        rows: one sequence of cells per row, as long as ``headers``.
        digits: decimals for floats.

    Returns:
        The table, lines joined by newlines, no trailing newline.
    """
    cells = _cells(headers, rows, digits)
    widths = [max(len(h), *(len(r[j]) for r in cells)) for j, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [values[0].ljust(widths[0])]
        parts += [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule, *(line(r) for r in cells)])


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary sibling to write, renamed over ``path`` at the end; removed on failure.

    A failed write (a full disk) raises an ``OSError`` naming ``path``, which is unchanged.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):  # a second error must not hide the first
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, str(tmp)):
            raise os_error_at(err, path, " (the previous file is kept)") from err
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    with _replacing(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(
    path: str | Path, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str]
) -> None:
    """Write dict rows as CSV (atomically); floats with full precision, ``nan``/``inf`` as text.

    Python's ``float()`` reads ``nan`` and ``inf`` back, so the file round-trips exactly.

    Args:
        path: the CSV file.
        rows: one mapping per row; keys outside ``fieldnames`` raise ``ValueError``.
        fieldnames: the column order.
    """
    with _replacing(Path(path)) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fieldnames))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_cell(v) for k, v in row.items()})


def _csv_cell(value: Any) -> Any:
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return repr(float(value))  # shortest exact form; 'nan' / 'inf' for non-finite
    return value


def to_jsonable(value: Any) -> Any:
    """Nested dicts/lists with NumPy scalars and non-finite floats made JSON-safe.

    Non-finite floats become the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (strict JSON has no
    such numbers); NumPy scalars and arrays become Python numbers and lists.
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented strict JSON (atomically), see :func:`to_jsonable`."""
    _atomic_write_text(Path(path), json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temporary sibling, then rename)."""
    _atomic_write_text(Path(path), text)


def remove_partials(folder: str | Path, patterns: Sequence[str]) -> list[str]:
    """Delete the temporaries of atomic writes that never finished (a killed process).

    Only the process that owns the folder (a run folder's lock) may call this: another one's
    temporary may be in the middle of being written.

    Args:
        folder: where the writes happen.
        patterns: glob patterns of the temporaries' names.

    Returns:
        The names of the deleted files, sorted.
    """
    removed = []
    for pattern in patterns:
        for file in Path(folder).glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
                removed.append(file.name)
    return sorted(removed)
