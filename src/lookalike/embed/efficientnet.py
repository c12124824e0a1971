"""Build EfficientNet-Lite as an ONNX graph from a NumPy state dict.

The architecture is read off the weights themselves (channel counts, kernel sizes, which
blocks expand), so Lite0, Lite1 and Lite2 share this one builder. Batch norms are folded into
the preceding convolutions, which is exact in inference and saves a third of the nodes.

Convolutions use TensorFlow "SAME" padding (``auto_pad=SAME_UPPER``: the extra row/column
goes at the bottom/right), as the weights were trained in TensorFlow; symmetric padding would
shift every stride-2 layer by half a pixel.

Graph inputs and outputs:

* ``image``: float32 ``(N, 3, H, W)``, already normalised (see :mod:`lookalike.embed.preprocess`);
  ``H`` and ``W`` are dynamic so multi-scale descriptors can reuse the graph.
* ``logits``: float32 ``(N, 1000)`` ImageNet class scores (before softmax).
* ``feature_map``: float32 ``(N, C, h, w)`` last convolutional activations (after ReLU6),
  which the pooling step turns into a global descriptor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BN_EPSILON = 1e-3
# EfficientNet's seven stages; only the first block of a stage may have stride 2. Every stage
# changes the channel count, which is how we find stage starts in the weights.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
OPSET = 17


@dataclass(frozen=True)
class BlockSpec:
    """One mobile inverted bottleneck block, as found in the weights."""

    prefix: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand: bool

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs(state: dict[str, np.ndarray]) -> list[BlockSpec]:
    """Infer the block structure (strides included) from the state dict keys and shapes."""
    specs: list[BlockSpec] = []
    stage = -1
    index = 0
    while f"_blocks.{index}._depthwise_conv.weight" in state:
        prefix = f"_blocks.{index}."
        dw = state[prefix + "_depthwise_conv.weight"]
        expand = (prefix + "_expand_conv.weight") in state
        in_ch = state[prefix + "_expand_conv.weight"].shape[1] if expand else dw.shape[0]
        out_ch = state[prefix + "_project_conv.weight"].shape[0]
        stride = 1
        if in_ch != out_ch:
            stage += 1
            if stage >= len(STAGE_STRIDES):
                raise ValueError("unexpected number of EfficientNet stages in the weights")
            stride = STAGE_STRIDES[stage]
        specs.append(BlockSpec(prefix, int(in_ch), int(out_ch), int(dw.shape[-1]), stride, expand))
        index += 1
    if stage != len(STAGE_STRIDES) - 1:
        raise ValueError(f"expected {len(STAGE_STRIDES)} stages, found {stage + 1}")
    return specs


class _GraphBuilder:
    def __init__(self, state: dict[str, np.ndarray]):
        self.state = state
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def _const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def conv_bn(self, x: str, conv: str, bn: str, *, stride: int = 1, groups: int = 1) -> str:
        """Convolution followed by batch norm, folded into one Conv with bias."""
        w = self.state[conv + ".weight"].astype(np.float64)
        gamma = self.state[bn + ".weight"].astype(np.float64)
        beta = self.state[bn + ".bias"].astype(np.float64)
        mean = self.state[bn + ".running_mean"].astype(np.float64)
        var = self.state[bn + ".running_var"].astype(np.float64)
        scale = gamma / np.sqrt(var + BN_EPSILON)
        w_folded = (w * scale[:, None, None, None]).astype(np.float32)
        b_folded = (beta - mean * scale).astype(np.float32)
        wname = self._const(conv + ".w", w_folded)
        bname = self._const(conv + ".b", b_folded)
        out = self._name(conv.strip("_").replace(".", "_"))
        k = int(w.shape[-1])
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, wname, bname],
                [out],
                kernel_shape=[k, k],
                strides=[stride, stride],
                group=groups,
                auto_pad="SAME_UPPER" if k > 1 or stride > 1 else "NOTSET",
            )
        )
        return out

    def relu6(self, x: str) -> str:
        out = self._name("relu6")
        lo = self._const(self._name("zero"), np.array(0.0, dtype=np.float32))
        hi = self._const(self._name("six"), np.array(6.0, dtype=np.float32))
        self.nodes.append(helper.make_node("Clip", [x, lo, hi], [out]))
        return out

    def block(self, x: str, spec: BlockSpec) -> str:
        p = spec.prefix
        h = x
        if spec.expand:
            h = self.relu6(self.conv_bn(h, p + "_expand_conv", p + "_bn0"))
        channels = self.state[p + "_depthwise_conv.weight"].shape[0]
        h = self.relu6(
            self.conv_bn(h, p + "_depthwise_conv", p + "_bn1", stride=spec.stride, groups=channels)
        )
        h = self.conv_bn(h, p + "_project_conv", p + "_bn2")
        if spec.residual:
            out = self._name("add")
            self.nodes.append(helper.make_node("Add", [h, x], [out]))
            h = out
        return h

    def build(self) -> onnx.ModelProto:
        x = self.relu6(self.conv_bn("image", "_conv_stem", "_bn0", stride=2))
        for spec in block_specs(self.state):
            x = self.block(x, spec)
        fmap = self.relu6(self.conv_bn(x, "_conv_head", "_bn1"))
        self.nodes.append(helper.make_node("Identity", [fmap], ["feature_map"]))
        pooled = self._name("gap")
        self.nodes.append(helper.make_node("GlobalAveragePool", [fmap], [pooled]))
        flat = self._name("flat")
        self.nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
        fc_w = self._const("fc.w", self.state["_fc.weight"].astype(np.float32))
        fc_b = self._const("fc.b", self.state["_fc.bias"].astype(np.float32))
        self.nodes.append(helper.make_node("Gemm", [flat, fc_w, fc_b], ["logits"], transB=1))

        channels = int(self.state["_conv_head.weight"].shape[0])
        classes = int(self.state["_fc.weight"].shape[0])
        graph = helper.make_graph(
            self.nodes,
            "efficientnet_lite",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
            [
                helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
                helper.make_tensor_value_info(
                    "feature_map", TensorProto.FLOAT, ["N", channels, "h", "w"]
                ),
            ],
            self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="lookalike",
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def build_onnx(state: dict[str, np.ndarray]) -> onnx.ModelProto:
    """Return the ONNX model for an EfficientNet-Lite state dict."""
    return _GraphBuilder(state).build()
