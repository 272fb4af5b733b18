"""Trident callbacks, one public class per file."""

from trident_core.callbacks.export_on_fit_end import ExportOnFitEnd
from trident_core.callbacks.learning_rate_tracker import LearningRateTracker
from trident_core.callbacks.non_finite_guard import NonFiniteGuard
from trident_core.callbacks.out_of_memory_hint import OutOfMemoryHint
from trident_core.callbacks.progress_on_exception import ProgressOnException
from trident_core.callbacks.rng_state import RngState
from trident_core.callbacks.throughput import Throughput

__all__ = ["ExportOnFitEnd", "LearningRateTracker", "NonFiniteGuard", "OutOfMemoryHint", "ProgressOnException",
           "RngState", "Throughput"]
