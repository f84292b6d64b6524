"""Output shapes of common built-in Keras layers from their config alone, so the model card can
name the shapes a config does not record (a Keras 3 model's terminal layers, every layer of a
legacy .h5 config) without importing TensorFlow. Shapes follow Keras: batch first, channels last
unless ``data_format`` says ``channels_first``; ``None`` for an unknown dimension.
tests/cli/test_card_is_light.py checks each rule against Keras' own ``compute_output_spec``.
"""

from __future__ import annotations

import math
from typing import Any

Shape = list  # [batch, ..., channels] with None for unknown dimensions

_CONV = {"Conv1D": 1, "Conv2D": 2, "Conv3D": 3, "Convolution1D": 1, "Convolution2D": 2,
         "Convolution3D": 3, "SeparableConv1D": 1, "SeparableConv2D": 2, "DepthwiseConv1D": 1,
         "DepthwiseConv2D": 2}
_CONV_TRANSPOSE = {"Conv1DTranspose": 1, "Conv2DTranspose": 2, "Conv3DTranspose": 3,
                   "Convolution1DTranspose": 1, "Convolution2DTranspose": 2, "Convolution3DTranspose": 3}
_POOL = {"MaxPooling1D": 1, "MaxPooling2D": 2, "MaxPooling3D": 3, "MaxPool1D": 1, "MaxPool2D": 2,
         "MaxPool3D": 3, "AveragePooling1D": 1, "AveragePooling2D": 2, "AveragePooling3D": 3,
         "AvgPool1D": 1, "AvgPool2D": 2, "AvgPool3D": 3}
_UPSAMPLING = {"UpSampling1D": 1, "UpSampling2D": 2, "UpSampling3D": 3}
_GLOBAL_POOL = ("GlobalAveragePooling", "GlobalAvgPool", "GlobalMaxPooling", "GlobalMaxPool")


def builtin_output_shape(class_name: str, config: dict, shapes: list[Shape]) -> Shape | None:
    """The output shape of built-in layer ``class_name`` with ``config`` called on tensors of
    ``shapes``; None when no rule covers the layer (the card then reports the shape unknown)."""
    if not shapes or shapes[0] is None:
        return None
    shape = list(shapes[0])
    try:
        if class_name in _CONV:
            return _conv(shape, config, _CONV[class_name], class_name)
        if class_name in _CONV_TRANSPOSE:
            return _conv_transpose(shape, config, _CONV_TRANSPOSE[class_name])
        if class_name in _POOL:
            return _pool(shape, config, _POOL[class_name])
        if class_name in _UPSAMPLING:
            return _upsample(shape, config, _UPSAMPLING[class_name])
        if class_name.startswith(_GLOBAL_POOL):
            return _global_pool(shape, config)
        return _simple(class_name, config, shape, shapes)
    except (TypeError, ValueError, KeyError, IndexError):
        return None  # an unexpected config: unknown rather than wrong


def _simple(class_name: str, config: dict, shape: Shape, shapes: list[Shape]) -> Shape | None:
    if class_name == "Dense":
        return shape[:-1] + [int(config["units"])]
    if class_name == "Flatten":
        rest = shape[1:]
        return [shape[0], None if None in rest else math.prod(rest)]
    if class_name == "Reshape":
        target = list(config["target_shape"])
        if -1 in target and None not in shape[1:]:
            known = math.prod(d for d in target if d != -1)
            target[target.index(-1)] = math.prod(shape[1:]) // known
        return [shape[0]] + [None if d == -1 else int(d) for d in target]
    if class_name == "Concatenate":
        axis = int(config.get("axis", -1))
        if any(s is None for s in shapes):
            return None
        out = list(shape)
        sizes = [s[axis] for s in shapes]
        out[axis] = None if None in sizes else sum(sizes)
        return out
    if class_name in ("ZeroPadding2D", "Cropping2D"):
        spatial = _spatial_axes(shape, config, 2)
        amounts = _pairs(config.get("padding" if class_name == "ZeroPadding2D" else "cropping"), 2)
        sign = 1 if class_name == "ZeroPadding2D" else -1
        out = list(shape)
        for axis, (before, after) in zip(spatial, amounts):
            out[axis] = None if out[axis] is None else out[axis] + sign * (before + after)
        return out
    if class_name == "Permute":
        dims = [int(d) for d in config["dims"]]
        return [shape[0]] + [shape[d] for d in dims]
    if class_name == "RepeatVector":
        return [shape[0], int(config["n"])] + shape[1:]
    return None


def _spatial_axes(shape: Shape, config: dict, rank: int) -> list[int]:
    first = config.get("data_format") == "channels_first"
    return list(range(2, 2 + rank)) if first else list(range(1, 1 + rank))


def _tuple(value: Any, rank: int) -> list[int]:
    return [int(value)] * rank if isinstance(value, (int, float)) else [int(v) for v in value]


def _pairs(value: Any, rank: int) -> list[tuple[int, int]]:
    if isinstance(value, (int, float)):
        return [(int(value), int(value))] * rank
    return [(int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1])) for v in value]


def _channel_axis(config: dict) -> int:
    return 1 if config.get("data_format") == "channels_first" else -1


def _conv_length(size: int | None, kernel: int, stride: int, padding: str, dilation: int) -> int | None:
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    span = (kernel - 1) * dilation + 1
    return (size - span) // stride + 1


def _conv(shape: Shape, config: dict, rank: int, class_name: str) -> Shape:
    kernel = _tuple(config["kernel_size"], rank)
    strides = _tuple(config.get("strides", 1), rank)
    dilation = _tuple(config.get("dilation_rate", 1), rank)
    padding = str(config.get("padding", "valid")).lower()
    out = list(shape)
    for i, axis in enumerate(_spatial_axes(shape, config, rank)):
        out[axis] = _conv_length(shape[axis], kernel[i], strides[i], padding, dilation[i])
    channels = shape[_channel_axis(config)]
    if class_name.startswith("Depthwise"):
        multiplier = int(config.get("depth_multiplier", 1))
        out[_channel_axis(config)] = None if channels is None else channels * multiplier
    else:
        out[_channel_axis(config)] = int(config["filters"])
    return out


def _conv_transpose(shape: Shape, config: dict, rank: int) -> Shape:
    kernel = _tuple(config["kernel_size"], rank)
    strides = _tuple(config.get("strides", 1), rank)
    dilation = _tuple(config.get("dilation_rate", 1), rank)
    padding = str(config.get("padding", "valid")).lower()
    if config.get("output_padding") is not None:
        return None  # rare; Keras' formula with output padding is not repeated here
    out = list(shape)
    for i, axis in enumerate(_spatial_axes(shape, config, rank)):
        size = shape[axis]
        if size is None:
            out[axis] = None
        elif padding == "same":
            out[axis] = size * strides[i]
        else:
            out[axis] = size * strides[i] + max((kernel[i] - 1) * dilation[i] + 1 - strides[i], 0)
    out[_channel_axis(config)] = int(config["filters"])
    return out


def _pool(shape: Shape, config: dict, rank: int) -> Shape:
    pool = _tuple(config.get("pool_size", 2), rank)
    strides = _tuple(config.get("strides") or pool, rank)
    padding = str(config.get("padding", "valid")).lower()
    out = list(shape)
    for i, axis in enumerate(_spatial_axes(shape, config, rank)):
        out[axis] = _conv_length(shape[axis], pool[i], strides[i], padding, 1)
    return out


def _upsample(shape: Shape, config: dict, rank: int) -> Shape:
    size = _tuple(config.get("size", 2), rank)
    out = list(shape)
    for i, axis in enumerate(_spatial_axes(shape, config, rank)):
        out[axis] = None if shape[axis] is None else shape[axis] * size[i]
    return out


def _global_pool(shape: Shape, config: dict) -> Shape:
    channels = shape[_channel_axis(config)]
    if config.get("keepdims"):
        out = [1] * len(shape)
        out[0], out[_channel_axis(config)] = shape[0], channels
        return out
    return [shape[0], channels]
