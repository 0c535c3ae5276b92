"""Reading an export: encoding, header, empty rows, all as a lazy polars scan.

A file is checked before polars sees it: binary content or a single-column "CSV" is refused
with one clear message; UTF-8 is tried first (a BOM is dropped) and a file that is not UTF-8 is
read as latin-1, transcoded once into the run's work folder so the scan stays streaming. Column
names lose surrounding whitespace (``Sales Channel `` becomes ``Sales Channel``); every column is
read as text and parsed later, per column, by the profile.
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recoverydesk.domain.errors import InvalidInput

CHUNK = 1 << 20
DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One input file, ready to scan: its clean column names and where polars reads it."""

    path: Path
    columns: tuple[str, ...]
    encoding: str  # "utf-8" or "latin-1" (as read)
    delimiter: str
    readable: Path  # the file itself, or its UTF-8 transcoding
    rows: pl.LazyFrame  # the scan

    def scan(self) -> pl.LazyFrame:
        """Every row as text, named by the clean header; fully empty rows dropped."""
        frame = self.scan_all_rows()
        return frame.filter(~pl.all_horizontal(_blank(name) for name in self.columns))

    def scan_all_rows(self) -> pl.LazyFrame:
        """Every row as text (the file's own counts: rows, empty rows, duplicates)."""
        return self.rows


def _scan(readable: Path, delimiter: str, columns: tuple[str, ...]) -> pl.LazyFrame:
    return pl.scan_csv(
        readable,
        separator=delimiter,
        has_header=True,
        new_columns=list(columns),
        infer_schema=False,
        encoding="utf8-lossy",
        truncate_ragged_lines=True,
    )


def _blank(name: str) -> pl.Expr:
    return pl.col(name).is_null() | (pl.col(name) == "")


def open_source(path: Path, workdir: Path) -> SourceFile:
    """Check one file and prepare its scan; a file that cannot be an export is refused."""
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    try:
        with path.open("rb") as handle:
            head = handle.read(65536)
    except OSError as error:
        raise InvalidInput(f"{path}: cannot read ({error.strerror or error})") from None
    if not head.strip():
        raise InvalidInput(f"{path}: the file is empty")
    if b"\x00" in head:
        raise InvalidInput(f"{path}: not a CSV file (binary content)")
    encoding = "utf-8" if _is_utf8(path) else "latin-1"
    readable = path if encoding == "utf-8" else _transcoded(path, workdir)
    header_line = _first_line(readable)
    delimiter = _delimiter(header_line)
    names = next(csv.reader([header_line], delimiter=delimiter), [])
    if len(names) < 2:
        raise InvalidInput(f"{path}: not a CSV export (the first line has no columns)")
    columns = _clean(names)
    return SourceFile(
        path, columns, encoding, delimiter, readable, _scan(readable, delimiter, columns)
    )


def _is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return False
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _transcoded(path: Path, workdir: Path) -> Path:
    target = workdir / f"{len(list(workdir.iterdir()))}-{path.stem}.utf8.csv"
    with path.open("rb") as source, target.open("wb") as sink:
        while chunk := source.read(CHUNK):
            sink.write(chunk.decode("latin-1").encode("utf-8"))
    return target


def _first_line(path: Path) -> str:
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        return handle.readline().rstrip("\r\n")


def _delimiter(line: str) -> str:
    counts = {sep: line.count(sep) for sep in DELIMITERS}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _clean(names: list[str]) -> tuple[str, ...]:
    """Header names without BOM or surrounding spaces; an empty or repeated name gets a suffix."""
    seen: dict[str, int] = {}
    clean: list[str] = []
    for index, raw in enumerate(names):
        name = raw.replace("\ufeff", "").strip() or f"column_{index + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        clean.append(name)
    return tuple(clean)
