"""Reliability tests: reuse the core's toy domain and make it (and the helpers here) importable in subprocesses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
PATHS = [str(HERE), str(HERE.parent / "core")]
for path in PATHS:
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ["PYTHONPATH"] = os.pathsep.join([*PATHS, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
