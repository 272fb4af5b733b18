"""Settings for the whole test run: no network, quiet and deterministic third-party libraries."""

from __future__ import annotations

import os

# W&B's console capture fights pytest's own capture of stdout; the tests read run files, not the console.
os.environ.setdefault("WANDB_CONSOLE", "off")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
