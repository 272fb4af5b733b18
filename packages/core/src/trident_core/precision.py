"""Which precision a run gets when its recipe asks for bf16 where the hardware computes it natively."""

from __future__ import annotations

import torch


def native_bf16(accelerator: str | None, strategy: object = None) -> tuple[bool, str]:
    """Whether the device a run will train on computes bfloat16 natively, and what was found.

    CUDA: a GPU that supports bf16 (Ampere or newer). CPU: AMX or AVX512-BF16 (Sapphire Rapids, Zen 4 and
    newer); other CPUs emulate bf16 matrix products and run them slower than float32. Asking a GPU initialises
    CUDA in this process, which a strategy that forks its workers (``ddp_fork``, ``ddp_notebook``) cannot
    survive; those runs are not asked and stay in float32 unless the precision is set.
    """
    name = str(accelerator or "auto").lower()
    if name in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        if isinstance(strategy, str) and ("fork" in strategy or "notebook" in strategy):
            return False, f"strategy {strategy!r} forks after this check, so the GPU was not asked"
        supported = torch.cuda.is_bf16_supported()
        return supported, f"{torch.cuda.get_device_name()} {'supports' if supported else 'lacks'} bf16"
    if name not in ("auto", "cpu"):
        return False, f"accelerator {name!r}"
    amx = _cpu_flag("_is_amx_tile_supported")
    avx512_bf16 = _cpu_flag("_is_avx512_bf16_supported")
    found = "AMX" if amx else "AVX512-BF16" if avx512_bf16 else "neither AMX nor AVX512-BF16"
    return amx or avx512_bf16, f"this CPU has {found}"


def resolve_precision(accelerator: str | None, strategy: object = None) -> tuple[str, str]:
    """``bf16-mixed`` on native-bf16 hardware, else ``32-true``; with the reason, for the log."""
    native, found = native_bf16(accelerator, strategy)
    return ("bf16-mixed" if native else "32-true"), found


def _cpu_flag(name: str) -> bool:
    check = getattr(torch.cpu, name, None)  # private in torch 2.x; absent means unknown, so no
    return bool(check()) if callable(check) else False
