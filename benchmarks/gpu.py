"""P7, GPU only: bf16 vs fp32 step time, ``torch.compile`` vs eager, MFU of the NLP fine-tune, UNet 3D images/s.

Run on a CUDA machine with ``uv run python -m benchmarks.gpu`` (prints JSON); the main runner calls
:func:`run_rows`, which skips cleanly without CUDA.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import Arm, Row, Settings, make_row, skipped_row

COMMAND = "uv run python -m benchmarks.gpu"


def _time_steps(step: Callable[[], Any], warmup: int, steps: int) -> dict[str, float]:
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"step_s": statistics.median(times), "max_memory_allocated_mb": torch.cuda.max_memory_allocated() / 2**20}


def _train_step(net: torch.nn.Module, make_loss: Callable[[torch.nn.Module], torch.Tensor], dtype: torch.dtype | None):
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = make_loss(net)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def nlp(quick: bool) -> dict[str, Any]:
    from trident_nlp.model import IntentClassifier
    from trident_nlp.text import MINILM, SCRATCH, minilm_path

    backbone = MINILM if minilm_path() is not None and not quick else SCRATCH
    batch, length = 32, 64
    ids = torch.randint(1000, 5000, (batch, length), device="cuda")
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 20, (batch,), device="cuda")

    def loss_of(net: torch.nn.Module) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(net(ids, mask), labels)

    out: dict[str, Any] = {"model": backbone, "batch": batch, "seq_len": length}
    warmup, steps = (2, 3) if quick else (10, 30)
    for name, dtype, compiled in (("fp32_eager", None, False), ("bf16_eager", torch.bfloat16, False),
                                  ("fp32_compile", None, True), ("bf16_compile", torch.bfloat16, True)):
        torch.manual_seed(0)
        net = IntentClassifier(20, backbone, vocab_size=30522).cuda().train()
        model = torch.compile(net) if compiled else net
        out[name] = _time_steps(_train_step(model, loss_of, dtype), warmup, steps)
        out[name]["samples_per_s"] = batch / out[name]["step_s"]
    # MFU: model FLOPs of one training step (forward + backward) over the card's peak bf16 FLOPs
    try:
        from lightning.fabric.utilities.throughput import get_available_flops, measure_flops

        net = IntentClassifier(20, backbone, vocab_size=30522).cuda().train()
        flops = measure_flops(net, lambda: net(ids, mask), lambda y: y.sum())
        for name, precision in (("bf16_eager", "bf16-mixed"), ("bf16_compile", "bf16-mixed"),
                                ("fp32_eager", "32-true")):
            peak = get_available_flops(torch.device("cuda"), precision)
            if peak:
                out[name]["mfu"] = flops / out[name]["step_s"] / peak
        out["flops_per_step"] = flops
    except Exception as err:  # MFU is a bonus; never lose the timings for it
        out["mfu_error"] = f"{type(err).__name__}: {err}"
    return out


def unet(quick: bool) -> dict[str, Any]:
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    batch, roi = 8, (96, 96, 96)
    x = torch.randn(batch, 1, *roi, device="cuda")
    y = torch.randint(0, 3, (batch, 1, *roi), device="cuda")
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    out: dict[str, Any] = {"batch": batch, "roi": list(roi)}
    warmup, steps = (2, 3) if quick else (5, 20)
    for name, dtype, compiled in (("fp32_eager", None, False), ("bf16_eager", torch.bfloat16, False),
                                  ("bf16_compile", torch.bfloat16, True)):
        torch.manual_seed(0)
        net = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(16, 32, 64, 128), strides=(2, 2, 2),
                   num_res_units=2, norm="instance").cuda().train()
        model = torch.compile(net) if compiled else net
        out[name] = _time_steps(_train_step(model, lambda m: loss_fn(m(x), y), dtype), warmup, steps)
        out[name]["images_per_s"] = batch / out[name]["step_s"]
    return out


def measure(quick: bool = False) -> dict[str, Any]:
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "cuda": torch.version.cuda}
    for name, fn in (("nlp_minilm_finetune", nlp), ("unet3d", unet)):
        try:
            result[name] = fn(quick)
        except Exception as err:
            result[name] = {"error": f"{type(err).__name__}: {err}"}
    return result


def run_rows(settings: Settings) -> list[Row]:
    if not torch.cuda.is_available():
        return [skipped_row("P7", "GPU: bf16 vs fp32, torch.compile vs eager, MFU, UNet 3D images/s", COMMAND,
                            "no CUDA device on this machine; run `uv run python -m benchmarks.gpu` on one")]
    result = measure(settings.quick)
    rows = []
    device = result["device"]
    for section, unit_key, unit in (("nlp_minilm_finetune", "samples_per_s", "samples/s"),
                                    ("unet3d", "images_per_s", "images/s")):
        data = result[section]
        if "error" in data:
            continue
        base = data["fp32_eager"][unit_key]
        for arm in [k for k in data if isinstance(data[k], dict) and k != "fp32_eager"]:
            value = data[arm][unit_key]
            mfu = data[arm].get("mfu")
            what: dict[str, Any] = {"data": f"{section} synthetic batches", "threads": settings.threads}
            rows.append(make_row(
                "P7", f"{section} {arm} on {device}",
                Arm("fp32 eager", "fp32", [base], peak_rss_mb=None, **what),
                Arm(arm, "bf16" if "bf16" in arm else "fp32", [value], **what), unit, COMMAND,
                ratio="trident / baseline",
                notes="one median over the timed steps per arm (GPU memory: max_memory_allocated); "
                + (f"MFU {mfu:.1%}; " if mfu else "")
                + f"max_memory_allocated {data[arm]['max_memory_allocated_mb']:.0f} MiB vs "
                f"{data['fp32_eager']['max_memory_allocated_mb']:.0f} MiB (fp32 eager)",
                extra=data[arm]))
    return rows


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device"}))
        sys.exit(0)
    print(json.dumps(measure("--quick" in sys.argv), indent=2))
