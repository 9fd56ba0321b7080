"""Tiny ONNX models, written with onnx.helper, that stand in for the detector and the embedder.

They make the ONNX Runtime code paths testable without trained weights: the fake detector
always answers the prediction tensor a test gives it, and the fake embedder's embedding is a
crop's mean colour, so coloured crops make predictable gallery matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# The IR version that goes with opset 17; newer ones may be too new for the installed runtime.
IR_VERSION = 8

Dim = int | str


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def yolo_prediction(
    boxes_cxcywh: Sequence[Sequence[float]],
    class_scores: Sequence[Sequence[float]],
    anchors: int | None = None,
) -> np.ndarray:
    """A ``(1, 4 + nc, A)`` YOLO prediction with the given anchors first and empty ones after.

    Args:
        boxes_cxcywh: per anchor centre x, centre y, width, height in letterboxed pixels.
        class_scores: per anchor ``nc`` scores in 0..1.
        anchors: total anchors (at least the boxes given); the rest score 0.
    """
    boxes = np.asarray(boxes_cxcywh, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(class_scores, dtype=np.float32).reshape(len(boxes), -1)
    total = anchors if anchors is not None else len(boxes)
    prediction = np.zeros((1, 4 + scores.shape[1], total), dtype=np.float32)
    prediction[0, :4, : len(boxes)] = boxes.T
    prediction[0, 4:, : len(boxes)] = scores.T
    prediction[0, 2:4, len(boxes) :] = 1.0  # tiny boxes, so empty anchors still look like boxes
    return prediction


def write_fake_yolo(
    path: Path,
    prediction: np.ndarray,
    *,
    imgsz: int = 64,
    input_shape: Sequence[Dim] | None = None,
) -> Path:
    """A detector that ignores its image and always outputs ``prediction``.

    The output is ``Constant + ReduceMean(images) * 0``: a real dependency on the input, so the
    graph is valid and ONNX Runtime cannot prune the input away.

    Args:
        path: where to write the model.
        prediction: the constant output, normally ``(1, 4 + nc, A)`` float32.
        imgsz: side of the ``(1, 3, imgsz, imgsz)`` input.
        input_shape: another declared input shape, to build a model the detector must refuse.
    """
    value = np.asarray(prediction, dtype=np.float32)
    shape = list(input_shape) if input_shape is not None else [1, 3, imgsz, imgsz]
    nodes = [
        helper.make_node(
            "Constant", [], ["prediction"], value=numpy_helper.from_array(value, "prediction")
        ),
        helper.make_node("ReduceMean", ["images"], ["image_mean"], keepdims=0),
        helper.make_node(
            "Constant",
            [],
            ["zero"],
            value=numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ),
        helper.make_node("Mul", ["image_mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["prediction", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fake_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(value.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return _save(model, path)


def write_mean_colour_embedder(
    path: Path,
    *,
    size: Dim = 8,
    batch: Dim = "N",
    keep_spatial: bool = False,
) -> Path:
    """An embedder whose embedding of a crop is its mean (normalised) RGB colour.

    ``(N, 3, size, size)`` -> GlobalAveragePool -> Flatten -> ``(N, 3)``.

    Args:
        path: where to write the model.
        size: side of the square input, or a name for a dynamic size.
        batch: the batch dimension: a name for dynamic, or a fixed int such as 1.
        keep_spatial: skip the Flatten and output ``(N, 3, 1, 1)`` like a pooled CNN backbone.
    """
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"])]
    if keep_spatial:
        output = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 3, 1, 1])
        nodes.append(helper.make_node("Identity", ["pooled"], ["embedding"]))
    else:
        output = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, 3])
        nodes.append(helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1))
    graph = helper.make_graph(
        nodes,
        "mean_colour_embedder",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [output],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return _save(model, path)
