"""``trident-vision``: the shared Trident command line for 3D segmentation."""

from __future__ import annotations

from trident_core.domain import DomainSpec

DOMAIN = DomainSpec(
    name="vision",
    module_class="trident_vision.module:SegmentationModule",
    datamodule_class="trident_vision.data:SegmentationDataModule",
    config_package="trident_vision.configs",
    monitor="val/dice",
    monitor_mode="max",
    infer="trident_vision.export:infer",
    demo_inputs="trident_vision.defaults:demo_inputs",
    demo_metrics=("test/dice", "test/hd95"),
    links=(
        ("data.num_classes", "model.num_classes"),
        ("data.num_classes", "model.net.init_args.out_channels"),
        ("data.in_channels", "model.in_channels"),
        ("data.in_channels", "model.net.init_args.in_channels"),
        ("data.class_names", "model.class_names"),
        ("data.label_values", "model.label_values"),
        ("data.preprocessing", "model.preprocessing"),
        ("data.roi_size", "model.roi_size"),
    ),
    description="3D medical image segmentation with MONAI (NIfTI in, NIfTI masks out).",
    serve="trident_vision.serve:Serving",
    quantize_refusal="Dynamic int8 quantization covers MatMul/Gemm and a 3D UNet is convolutions, so it would leave "
    "the graph float; static int8 for 3D convolutions is not implemented. Export without --quantize.",
)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``trident-vision``."""
    from trident_core.entry import main as run  # light: `--help` imports neither torch nor Lightning

    run(DOMAIN, args)
