"""Optimizer parameter groups of the intent classifier: head vs encoder learning rates, layer-wise decay inside the
encoder, no weight decay on biases and LayerNorm."""

from __future__ import annotations

from typing import Any

from torch import nn

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias", "layer_norm")


def param_groups(net: nn.Module, encoder_lr: float | None, head_lr: float | None, layer_decay: float
                 ) -> list[dict[str, Any]]:
    """The trainable parameters of ``net`` (its ``encoder.*`` and the rest, the head) in optimizer groups.

    Args:
        net: The classifier, with an ``encoder`` submodule.
        encoder_lr: Learning rate of the encoder's top layer; layer ``k`` below it gets
            ``encoder_lr * layer_decay**k``. ``None``: the optimizer's learning rate.
        head_lr: Learning rate of everything outside the encoder; ``None``: the optimizer's.
        layer_decay: See ``encoder_lr``.
    """
    encoder = net.get_submodule("encoder")
    depth_of = layer_depths(encoder)
    top = max(depth_of.values(), default=0)
    groups: dict[tuple[Any, bool], dict[str, Any]] = {}
    for name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith("encoder."):
            depth = depth_of.get(name.removeprefix("encoder."), top)
            lr = None if encoder_lr is None else encoder_lr * layer_decay ** (top - depth)
        else:
            lr = head_lr
        no_decay = any(key in name for key in NO_DECAY)
        group = groups.setdefault((lr, no_decay), {"params": []})
        group["params"].append(param)
        if lr is not None:
            group["lr"] = lr
        if no_decay:
            group["weight_decay"] = 0.0
    return list(groups.values())


def layer_depths(encoder: nn.Module) -> dict[str, int]:
    """Depth of every encoder parameter: embeddings 0, transformer layer ``i`` at ``i + 1``."""
    depths = {}
    for name, _ in encoder.named_parameters():
        parts = name.split(".")
        if "embeddings" in parts:
            depths[name] = 0
        elif "layer" in parts and parts[parts.index("layer") + 1].isdigit():
            depths[name] = int(parts[parts.index("layer") + 1]) + 1
    return depths
