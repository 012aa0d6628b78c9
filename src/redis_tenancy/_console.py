"""What the command line prints: aligned tables, JSON, and a progress bar for terminals.

Results go to stdout, everything else (progress, errors) to stderr, so
``redis-tenancy check --json | jq`` and readiness probes read clean output. The
progress bar is drawn only when stderr is a terminal: piped or captured, the
command is quiet apart from its result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["Console", "Progress"]


class Progress:
    """A one-line progress bar on a terminal, redrawn at most ten times a second.

    ``total=None`` (an unknown amount, e.g. a SCAN) shows a running count instead of
    a bar. Does nothing at all when ``enabled`` is false.
    """

    WIDTH = 28
    INTERVAL = 0.1

    def __init__(self, stream: TextIO, label: str, total: int | None, *, enabled: bool) -> None:
        self.stream = stream
        self.label = label
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.detail = ""
        self._drawn_at = 0.0
        self._width = 0

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()

    def advance(self, step: int = 1, detail: str = "") -> None:
        """Count ``step`` more units done; ``detail`` is shown after the count."""
        self.done += step
        self.detail = detail or self.detail
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < self.INTERVAL:
            return
        self._drawn_at = now
        if self.total:
            filled = min(self.WIDTH, self.WIDTH * self.done // self.total)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            line = f"{self.label} [{bar}] {self.done}/{self.total}"
        else:
            line = f"{self.label}: {self.done}"
        if self.detail:
            line += f" {self.detail}"
        pad = max(0, self._width - len(line))
        self._width = max(self._width, len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()


class Console:
    """The command's two streams and how it writes to them."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err

    @property
    def interactive(self) -> bool:
        """True when stderr is a terminal (a person is watching)."""
        isatty = getattr(self.err, "isatty", None)
        return bool(isatty and isatty())

    def progress(self, label: str, total: int | None) -> Progress:
        return Progress(self.err, label, total, enabled=self.interactive)

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def warn(self, text: str) -> None:
        self.err.write(text + "\n")

    def json(self, value: Any) -> None:
        self.out.write(json.dumps(value, indent=2, default=str) + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """Columns padded to their widest cell; a column whose header ends in ``>``
        (the marker is not shown) is right-aligned."""
        right = [h.endswith(">") for h in headers]
        names = [h.rstrip(">") for h in headers]
        cells = [[str(c) for c in row] for row in rows]
        widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]

        def render(row: Sequence[str]) -> str:
            parts = [
                c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)
            ]
            return "  ".join(parts).rstrip()

        self.line(render(names))
        for row in cells:
            self.line(render(row))
