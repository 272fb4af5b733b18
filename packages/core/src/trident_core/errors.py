"""The project's own exception types: every error a user can cause is one of these.

They are cheap to import (no torch) so light entry points can raise and catch them.
"""

from __future__ import annotations

from pathlib import Path


class TridentError(Exception):
    """Base class of every user-facing Trident error. The message says what went wrong and what to do."""


class DataError(TridentError):
    """Bad input data: names the file, the line (1-based) or the key, and the fix.

    Args:
        message: What is wrong and how to fix it.
        path: The offending file or folder.
        line: 1-based line number inside ``path``.
        key: The offending key, column or field.
    """

    def __init__(
        self, message: str, *, path: str | Path | None = None, line: int | None = None, key: str | None = None
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.key = key
        where = self.path or ""
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        prefix = f"{where}: " if where else ""
        keypart = f"[{key}] " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")


class ConfigError(TridentError):
    """A configuration value that cannot work (names the key and the accepted values)."""


class ExportError(TridentError):
    """An export that failed or whose parity check did not hold."""


class ArtifactError(TridentError):
    """An artifact folder that is missing, incomplete or of an unsupported format."""


class CheckpointError(TridentError):
    """A checkpoint that is missing, unreadable or refused by the safe loader."""


class ResourceError(TridentError):
    """The run needs more memory (or disk) than the machine has for this configuration; says what to change."""
