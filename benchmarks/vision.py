"""P4 (vision training: epoch time and time to a held-out Dice) and P4b (sliding-window inference)."""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.common import Row, Settings, interleave, make_row, timed_arm

COMMAND_B = "uv run python -m benchmarks --only P4b"


def default_net(quick: bool) -> Any:
    from monai.networks.nets import UNet

    if quick:
        return UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8, 16), strides=(2, 2),
                    num_res_units=1)
    # configs/default.yaml
    return UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(16, 32, 64, 128), strides=(2, 2, 2),
                num_res_units=2, norm="instance")


def run_inference(settings: Settings) -> list[Row]:
    """Sliding-window inference of one volume: MONAI's inferer driving onnxruntime vs the eager network."""
    import numpy as np
    from monai.inferers import sliding_window_inference

    from trident_core.artifact import load_artifact
    from trident_core.export import export_artifact
    from trident_vision.module import SegmentationModule

    roi = settings.pick((32, 32, 32), (48, 48, 48))
    module = SegmentationModule(net=default_net(settings.quick), num_classes=3, roi_size=roi).eval()
    artifact_dir = settings.workdir / "P4b" / "artifact"
    export_artifact(module.export_spec(), artifact_dir, domain="vision")
    artifact = load_artifact(artifact_dir, threads=settings.threads)
    shape = settings.pick((48, 48, 48), (96, 96, 96))
    image = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(0))
    net = module.net.eval().to(memory_format=torch.contiguous_format)  # the eager net as MONAI users have it
    sw, overlap, mode = module.sw_batch_size, module.overlap, module.blend_mode

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(artifact.run({"image": windows.numpy().astype(np.float32)})["logits"])

    def onnx() -> None:
        with torch.inference_mode():
            sliding_window_inference(image, roi, sw, predictor, overlap=overlap, mode=mode)

    def eager() -> None:
        with torch.inference_mode():
            sliding_window_inference(image, roi, sw, net, overlap=overlap, mode=mode)

    reps = settings.pick(3, 3)
    timed = interleave({"eager": eager, "onnx": onnx}, reps=reps, warmup=1)
    what: dict[str, Any] = {"precision": "fp32", "batch": sw, "threads": settings.threads,
            "data": f"one random {'x'.join(map(str, shape))} volume"}
    return [make_row(
        "P4b", f"vision sliding-window inference, one {'x'.join(map(str, shape))} volume, roi {roi[0]}^3",
        timed_arm(timed, "eager", "MONAI sliding_window_inference, eager net", **what),
        timed_arm(timed, "onnx", "MONAI inferer driving the artifact (onnxruntime)", **what), "s/volume", COMMAND_B,
        notes=f"sw_batch {sw}, overlap {overlap}, {mode} blending; {reps} interleaved reps after 1 warm-up; both arms "
        "in one process: each peak RSS holds the other arm's model too",
    )]


def run_training(settings: Settings) -> list[Row]:
    from benchmarks.vision_train import run

    return run(settings)
