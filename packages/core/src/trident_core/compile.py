"""``torch.compile`` of a TaskModule's network, in place, with an eager fallback.

The network is compiled with :meth:`torch.nn.Module.compile`, which compiles its ``__call__`` and leaves the module
itself (its parameters, its ``state_dict`` keys, its ``forward``) as it was: checkpoints hold plain weights and
export traces the eager module (:func:`eager`). A compilation that fails (no C++ compiler for Inductor, an operator
the backend cannot lower, a bad option) logs one warning and the network runs eagerly from then on.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from trident_core.errors import ConfigError

log = logging.getLogger(__name__)
# torch.compile's own keyword arguments (mode, dynamic, fullgraph, backend, options, disable)
COMPILE_KEYS = tuple(name for name in inspect.signature(torch.compile).parameters if name != "model")


def compile_options(value: bool | dict[str, Any] | None) -> dict[str, Any] | None:
    """``model.compile`` as keyword arguments of :func:`torch.compile`, or ``None`` for eager.

    ``True`` means torch's defaults; a dict holds ``mode``, ``dynamic``, ``fullgraph``, ``backend`` or ``options``.

    Raises:
        ConfigError: for any other value or an unknown key.
    """
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"model.compile must be true, false or a dict of torch.compile options, got {value!r}")
    unknown = sorted(set(value) - set(COMPILE_KEYS))
    if unknown:
        raise ConfigError(
            f"model.compile: unknown torch.compile option(s) {unknown}; use {list(COMPILE_KEYS)}, e.g. "
            "--model.compile '{mode: max-autotune, dynamic: false}'"
        )
    return dict(value)


def compile_in_place(net: nn.Module, options: dict[str, Any]) -> bool:
    """Compile ``net``'s ``__call__`` with ``options``; ``False`` (and a warning) when torch refuses the options.

    A failure when the compiled network first runs (or recompiles for new shapes) is caught there: one warning,
    then the network runs eagerly for the rest of the process.
    """
    if is_compiled(net):
        return True
    try:
        net.compile(**options)
    except Exception as err:  # e.g. an unknown backend or mode: torch.compile checks them here
        _warn(net, err)
        return False
    compiled = net._compiled_call_impl
    if compiled is not None:  # set by net.compile() above
        net._compiled_call_impl = _with_fallback(net, compiled)
    return True


def is_compiled(net: nn.Module) -> bool:
    """Whether ``net`` runs through ``torch.compile`` (set by :meth:`torch.nn.Module.compile`)."""
    return getattr(net, "_compiled_call_impl", None) is not None


@contextmanager
def eager(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` and every submodule eagerly inside the block (export traces the plain modules), then restore
    their compiled calls."""
    saved = {m: m._compiled_call_impl for m in model.modules() if is_compiled(m)}
    for module in saved:
        module._compiled_call_impl = None
    try:
        yield model
    finally:
        for module, call in saved.items():
            module._compiled_call_impl = call


def _with_fallback(net: nn.Module, compiled: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except Exception as err:
            # Errors of the user's own code fail again below, eagerly, with their plain stack trace.
            _warn(net, err)
            net._compiled_call_impl = None
            return net._call_impl(*args, **kwargs)

    return call


def _warn(net: nn.Module, err: Exception) -> None:
    cause: BaseException = err
    # Dynamo wraps the backend's own error (BackendCompilerFailed.inner_exception, or the cause)
    while (inner := getattr(cause, "inner_exception", None) or cause.__cause__) is not None:
        cause = inner
    text = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
    what = type(err).__name__ if cause is err else f"{type(err).__name__} from {type(cause).__name__}"
    log.warning(
        "torch.compile of %s failed (%s: %s); training continues eagerly. Set --model.compile false to skip "
        "compilation, or change its options (--model.compile '{mode: default, dynamic: null}')",
        type(net).__name__, what, text[:500],
    )
