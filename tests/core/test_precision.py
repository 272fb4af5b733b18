"""``bf16_if_native``: the real recipes train in bf16 where the hardware computes it natively, else in fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from toydomain import DOMAIN
from trident_core import precision
from trident_core.cli import run_domain
from trident_core.domain import load_object


@pytest.mark.parametrize(("amx", "avx512_bf16", "expected"), [
    (True, False, "bf16-mixed"), (False, True, "bf16-mixed"), (False, False, "32-true"),
])
def test_cpu_precision_follows_the_bf16_instructions(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, expected: str
) -> None:
    flags = {"_is_amx_tile_supported": amx, "_is_avx512_bf16_supported": avx512_bf16}
    monkeypatch.setattr(precision, "_cpu_flag", lambda name: flags[name])
    chosen, found = precision.resolve_precision("cpu")
    assert chosen == expected
    assert found == {"bf16-mixed": "this CPU has AMX" if amx else "this CPU has AVX512-BF16"}.get(
        chosen, "this CPU has neither AMX nor AVX512-BF16")
    assert precision.resolve_precision("mps") == ("32-true", "accelerator 'mps'")


def _cpuinfo_flags() -> set[str]:
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return flags


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="no /proc/cpuinfo to read this CPU's flags from")
def test_cpu_bf16_detection_matches_this_cpus_flags() -> None:
    """No mock: the detection (a private torch API) against the kernel's CPU flags, read independently. A torch
    upgrade that renames or drops the API would switch the recipes to fp32 on a bf16 CPU; this fails then."""
    flags = _cpuinfo_flags()
    amx = {"amx_tile", "amx_bf16"} <= flags
    avx512_bf16 = "avx512_bf16" in flags
    native, found = precision.native_bf16("cpu")
    assert native is (amx or avx512_bf16), f"detected {found!r}; /proc/cpuinfo bf16 flags: {flags & _BF16_FLAGS}"
    assert found == ("this CPU has AMX" if amx else "this CPU has AVX512-BF16" if avx512_bf16
                     else "this CPU has neither AMX nor AVX512-BF16")


_BF16_FLAGS = {"amx_tile", "amx_bf16", "avx512_bf16"}


def _fit(tmp_path: Path, name: str, *extra: str):
    return run_domain(DOMAIN, ["fit", "--config", "debug", "--trainer.default_root_dir", str(tmp_path / name),
                               "--data.data_dir", str(tmp_path / "data"), "--trainer.accelerator", "cpu", *extra])


@pytest.mark.parametrize("native", [True, False])
def test_bf16_if_native_picks_the_precision_and_an_explicit_one_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(precision, "_cpu_flag", lambda name: native)
    cli = _fit(tmp_path, "auto", "--bf16_if_native", "true")
    assert cli.trainer.precision == ("bf16-mixed" if native else "32-true")
    explicit = _fit(tmp_path, "explicit", "--bf16_if_native", "true", "--trainer.precision", "32-true")
    assert explicit.trainer.precision == "32-true"
    off = _fit(tmp_path, "off")
    assert off.trainer.precision == "32-true"


@pytest.mark.parametrize("domain", ["nlp", "vision", "audio"])
def test_recipes_choose_bf16_where_measured_faster_and_smoke_runs_stay_fp32(domain: str) -> None:
    spec = load_object(f"trident_{domain}.cli:DOMAIN")
    read = lambda name: yaml.safe_load(spec.config_path(name).read_text())
    default = bool(read("default").get("bf16_if_native"))
    # debug and demo are read on top of default.yaml, as the CLI does
    effective = {name: bool(read(name).get("bf16_if_native", default)) for name in ("debug", "demo")}
    # audio's step was only 1.05x faster in bf16 on AMX: not worth an unmeasured accuracy change (README)
    assert default is (domain != "audio")
    assert effective == {"debug": False, "demo": False}


def test_a_bf16_gpu_is_asked_unless_the_strategy_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking the GPU initialises CUDA, which forked DDP workers cannot survive: those runs are not asked."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100")
    assert precision.resolve_precision("auto", "ddp") == ("bf16-mixed", "NVIDIA H100 supports bf16")
    assert precision.resolve_precision("gpu") == ("bf16-mixed", "NVIDIA H100 supports bf16")

    def must_not_be_asked() -> bool:
        raise AssertionError("CUDA was initialised before the fork")

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", must_not_be_asked)
    chosen, found = precision.resolve_precision("gpu", "ddp_fork")
    assert chosen == "32-true" and "'ddp_fork' forks" in found
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert precision.resolve_precision("cuda") == ("32-true", "NVIDIA H100 lacks bf16")


def test_bf16_preset_trains_with_clipping_and_exports_in_float32(tmp_path: Path) -> None:
    """The whole path under bf16: fused AdamW with gradient clipping (Lightning alone refuses it), then the
    float32 artifact, checked against eager PyTorch as always."""
    import json

    cli = _fit(tmp_path, "bf16", "--preset", "bf16", "--trainer.gradient_clip_val", "1.0",
               "--model.optimizer.init_args.fused", "true")
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.trainer.optimizers[0].defaults["fused"] is True
    metadata = json.loads((tmp_path / "bf16" / "artifact" / "metadata.json").read_text())
    assert metadata["parity"]["onnx"]["passed"] and metadata["outputs"][0]["dtype"] == "float32"
