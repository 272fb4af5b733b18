"""SegmentationModule: learns, evaluates with sliding windows and rejects sizes the network cannot take."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice

from trident_core.errors import ConfigError
from trident_vision.data import SegmentationDataModule
from trident_vision.model import net_divisor, tiny_unet
from trident_vision.module import ClassMean, SegmentationModule


def _dice(module: SegmentationModule, image: torch.Tensor, label: torch.Tensor) -> float:
    module.eval()
    with torch.no_grad():
        pred = module.sliding_window(image).argmax(1, keepdim=True)
    one_hot = lambda x: torch.nn.functional.one_hot(x[:, 0].long(), 3).permute(0, 4, 1, 2, 3)
    return float(compute_dice(one_hot(pred), one_hot(label), include_background=False).nanmean())


def test_tiny_unet_overfits_one_volume(phantoms: Path) -> None:
    torch.manual_seed(0)
    data = SegmentationDataModule(datalist=str(phantoms / "dataset.json"), spacing=(3.0, 3.0, 3.0),
                                  roi_size=(24, 24, 24), cache="none")
    data.setup("validate")
    volume = data.datasets["val"][0]
    image, label = volume["image"].as_tensor()[None], volume["label"].as_tensor()[None]
    pad = [p for size in reversed(image.shape[2:]) for p in (0, max(0, 24 - size))]
    image, label = torch.nn.functional.pad(image, pad), torch.nn.functional.pad(label, pad)
    module = SegmentationModule(tiny_unet(1, 3), num_classes=3, roi_size=(24, 24, 24), overlap=0.0)
    start = _dice(module, image, label)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    centre = [max(0, (s - 24) // 2) for s in image.shape[2:]]
    patch = (slice(None), slice(None), *(slice(c, c + 24) for c in centre))
    module.train()
    for _ in range(40):
        optimizer.zero_grad()
        loss = module.loss(module.net(image[patch]), label[patch])
        loss.backward()
        optimizer.step()
    end = _dice(module, image, label)
    assert end > 0.6 and end > start + 0.4, (start, end)


def test_roi_not_divisible_by_stride_is_rejected() -> None:
    net = tiny_unet(1, 3)
    assert net_divisor(net) == 4
    with pytest.raises(ConfigError, match=r"multiples of 4.*e\.g\. \[32, 28, 32\]"):
        SegmentationModule(net, num_classes=3, roi_size=(32, 30, 33))


def test_output_channels_must_match_classes() -> None:
    with pytest.raises(ConfigError, match="3 output channels but the data has 4 classes"):
        SegmentationModule(tiny_unet(1, 3), num_classes=4, roi_size=(32, 32, 32))


def test_odd_sized_volumes_are_padded_by_the_sliding_window() -> None:
    module = SegmentationModule(tiny_unet(1, 3), num_classes=3, roi_size=(16, 16, 16)).eval()
    with torch.no_grad():
        logits = module.sliding_window(torch.randn(1, 1, 13, 21, 9))
    assert logits.shape == (1, 3, 13, 21, 9)


def test_class_mean_skips_empty_classes() -> None:
    metric = ClassMean(2)
    metric.update(torch.tensor([[0.5, float("nan")], [1.0, 0.25]]))
    metric.update(torch.tensor([[float("inf"), 0.75]]))
    assert np.allclose(metric.compute().numpy(), [0.75, 0.5])


def test_other_monai_networks_plug_in_by_class() -> None:
    from monai.networks.nets import SegResNet

    net = SegResNet(spatial_dims=3, in_channels=1, out_channels=3, init_filters=8, blocks_down=(1, 1, 1),
                    blocks_up=(1, 1))
    assert net_divisor(net) == 4
    with pytest.raises(ConfigError, match="multiples of 4"):
        SegmentationModule(net, num_classes=3, roi_size=(18, 16, 16))
    module = SegmentationModule(net, num_classes=3, roi_size=(16, 16, 16)).eval()
    with torch.no_grad():
        assert module.sliding_window(torch.randn(1, 1, 20, 17, 16)).shape == (1, 3, 20, 17, 16)
