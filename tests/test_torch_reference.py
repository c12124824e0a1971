"""Dev-only check: our ONNX graph equals an independent PyTorch implementation to 1e-4.

The reference below is written from the published EfficientNet-Lite0 configuration (stage
repeats, kernels, strides, expansion), not from our weight-driven builder, so it checks the
structure inference, batch-norm folding and TensorFlow SAME padding independently.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

from lookalike.embed.embedder import Embedder
from lookalike.embed.registry import get_model
from lookalike.settings import Settings

# (repeats, kernel, stride, expand) for EfficientNet-Lite0's seven stages.
LITE0_STAGES = [(1, 3, 1, 1), (2, 3, 2, 6), (2, 5, 2, 6), (3, 3, 2, 6), (3, 5, 1, 6), (4, 5, 2, 6), (1, 3, 1, 6)]


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    def amount(size: int) -> tuple[int, int]:
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2

    top, bottom = amount(x.shape[2])
    left, right = amount(x.shape[3])
    return F.pad(x, (left, right, top, bottom))


def _conv_bn(x, sd, conv, bn, stride=1, groups=1, act=True):
    w = sd[conv + ".weight"]
    x = F.conv2d(_same_pad(x, w.shape[-1], stride), w, stride=stride, groups=groups)
    x = F.batch_norm(
        x, sd[bn + ".running_mean"], sd[bn + ".running_var"], sd[bn + ".weight"], sd[bn + ".bias"],
        training=False, eps=1e-3,
    )
    return torch.clamp(x, 0, 6) if act else x


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor):
    x = _conv_bn(x, sd, "_conv_stem", "_bn0", stride=2)
    index = 0
    for repeats, kernel, stride, expand in LITE0_STAGES:
        for r in range(repeats):
            p = f"_blocks.{index}."
            s = stride if r == 0 else 1
            h = x
            if expand != 1:
                h = _conv_bn(h, sd, p + "_expand_conv", p + "_bn0")
            assert sd[p + "_depthwise_conv.weight"].shape[-1] == kernel
            h = _conv_bn(h, sd, p + "_depthwise_conv", p + "_bn1", stride=s, groups=h.shape[1])
            h = _conv_bn(h, sd, p + "_project_conv", p + "_bn2", act=False)
            x = h + x if (s == 1 and h.shape == x.shape) else h
            index += 1
    fmap = _conv_bn(x, sd, "_conv_head", "_bn1")
    logits = F.linear(fmap.mean(dim=(2, 3)), sd["_fc.weight"], sd["_fc.bias"])
    return logits, fmap


def test_onnx_matches_pytorch_reference():
    spec = get_model("lite0")
    sd = {k: torch.from_numpy(np.array(v)) for k, v in spec.loader(spec.weights_path()).items()}
    embedder = Embedder(Settings(model="lite0"))
    batch = np.stack(
        [embedder.preprocess(Image.fromarray(img)) for img in (data.chelsea(), data.coffee(), data.astronaut())]
    )
    onnx_logits, onnx_fmap = embedder.session.run(["logits", "feature_map"], {"image": batch})
    with torch.no_grad():
        ref_logits, ref_fmap = reference_forward(sd, torch.from_numpy(batch))
    np.testing.assert_allclose(onnx_fmap, ref_fmap.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(onnx_logits, ref_logits.numpy(), atol=1e-4, rtol=1e-4)
