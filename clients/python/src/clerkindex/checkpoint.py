"""Where a watch keeps the sequence of the last event it handled, so a restarted program resumes
after it instead of missing events or starting over."""

from __future__ import annotations

import os
import tempfile
from typing import Optional, Protocol

__all__ = ["Checkpoint", "FileCheckpoint", "MemoryCheckpoint"]


class Checkpoint(Protocol):
    def load(self) -> Optional[int]:
        """The last handled sequence, or None before the first event."""

    def save(self, sequence: int) -> None:
        """Record that every event up to ``sequence`` was handled."""


class MemoryCheckpoint:
    """A checkpoint that lives as long as the process (for tests and short jobs)."""

    def __init__(self, sequence: Optional[int] = None):
        self.sequence = sequence

    def load(self) -> Optional[int]:
        return self.sequence

    def save(self, sequence: int) -> None:
        self.sequence = sequence


class FileCheckpoint:
    """A checkpoint in a small text file, replaced atomically (write, fsync, rename) so a crash
    leaves either the old or the new sequence, never a torn one."""

    def __init__(self, path: "str | os.PathLike[str]"):
        self.path = os.fspath(path)

    def load(self) -> Optional[int]:
        try:
            with open(self.path, encoding="ascii") as f:
                text = f.read().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            raise ValueError(f"{self.path} does not hold a sequence number: {text[:40]!r}")
        return int(text)

    def save(self, sequence: int) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint-")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(f"{sequence}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
