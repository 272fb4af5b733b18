"""Networks: MONAI's own 3D networks, a tiny factory for tests, and the spatial divisor a network needs.

Plain ``nn.Module`` code only (no Lightning), so models export and test alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn


def tiny_unet(in_channels: int = 1, num_classes: int = 3) -> nn.Module:
    """A 3D UNet small enough to train in seconds on a CPU (total stride 4)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=num_classes, channels=(8, 16, 32),
                strides=(2, 2), num_res_units=1)


def net_divisor(net: nn.Module) -> int:
    """The number every spatial size fed to ``net`` must be a multiple of (its total down-sampling stride).

    Known MONAI networks are read from their configuration; anything else is assumed to need 16.
    """
    strides = getattr(net, "strides", None)
    config: Any = net  # MONAI networks keep their configuration as plain attributes
    if strides is not None and type(net).__name__ in ("UNet", "AttentionUnet"):
        return int(math.prod(_scalar_stride(s) for s in strides))
    name = type(net).__name__
    if name in ("SegResNet", "SegResNetVAE"):
        return 2 ** (len(config.blocks_down) - 1)
    if name == "SwinUNETR":
        return 32
    if name == "DynUNet":
        return int(math.prod(_scalar_stride(s) for s in config.strides))
    return 16  # UNETR (16^3 patches), BasicUNet (four 2x poolings) and unknown networks


def _scalar_stride(stride: int | Sequence[int]) -> int:
    return int(stride) if isinstance(stride, int) else int(max(stride))


def out_channels(net: nn.Module) -> int | None:
    """Output channels of a MONAI network when it says so, else ``None``."""
    for attr in ("out_channels", "out_channel", "n_classes"):
        value = getattr(net, attr, None)
        if isinstance(value, int):
            return value
    return None
