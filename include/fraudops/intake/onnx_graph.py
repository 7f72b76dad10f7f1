"""Screening and shaping of an uploaded (or converted) ONNX graph before anything runs it.

Screening refuses, naming what it found: weights stored outside the file (external data),
operators outside the allow-list (custom domains, control flow, random generators, string and
sequence operators), subgraphs and model-local functions. Shaping gives the graph the interface the
scoring service feeds: one float32 input ``features`` [N, n_features] and one output
``probabilities`` [N, 2] (P(genuine), P(fraud)); a model that outputs one probability column
gets the complement added in the graph itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fraudops.exceptions import IntakeError
from fraudops.training.package import INPUT_NAME, OUTPUT_NAME

if TYPE_CHECKING:
    import onnx

#: Operators a fraud model may use: arithmetic, activations, shape and tensor plumbing, reductions,
#: and the ONNX-ML tree, linear and preprocessing operators the converters emit. No control flow
#: (``If``, ``Loop``, ``Scan``), no random generators, no string or sequence operators.
ALLOWED_OPS: dict[str, frozenset[str]] = {
    "": frozenset(
        {
            "Abs", "Add", "And", "ArgMax", "ArgMin", "BatchNormalization", "Cast", "CastLike", "Ceil",
            "Clip", "Concat", "Constant", "ConstantOfShape", "Div", "Dropout", "Einsum", "Elu",
            "Equal", "Erf", "Exp", "Expand", "Flatten", "Floor", "Gather", "GatherElements", "Gelu",
            "Gemm", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity", "IsInf",
            "IsNaN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax",
            "MatMul", "Max", "Mean", "Min", "Mod", "Mul", "Neg", "Not", "Or", "Pad", "Pow",
            "PRelu", "Reciprocal", "ReduceL2", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
            "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Round",
            "Selu", "Shape", "Sigmoid", "Sign", "Size", "Slice", "Softmax", "Softplus", "Softsign",
            "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "TopK", "Transpose",
            "Trilu", "Unsqueeze", "Where", "Xor",
        }
    ),
    "ai.onnx.ml": frozenset(
        {
            "ArrayFeatureExtractor", "Binarizer", "FeatureVectorizer", "Imputer", "LinearClassifier",
            "LinearRegressor", "Normalizer", "OneHotEncoder", "Scaler", "SVMClassifier",
            "SVMRegressor", "TreeEnsemble", "TreeEnsembleClassifier", "TreeEnsembleRegressor",
        }
    ),
}  # fmt: skip


def _tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    import onnx

    found = list(model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                found.append(attr.t)
            found.extend(attr.tensors)
    return found


def screen(model: onnx.ModelProto) -> dict[str, int]:
    """Refuse a graph with external data, disallowed operators, subgraphs or local functions;
    return the operator counts of one that passes."""
    import onnx

    external = [t.name for t in _tensors(model) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise IntakeError(
            "external_data",
            f"{len(external)} tensor(s) keep their data outside the file ({', '.join(external[:5])}): "
            "upload one self-contained .onnx file (`onnx.save(model, path, save_as_external_data=False)`)",
        )
    if model.functions:
        names = ", ".join(f.name for f in model.functions[:5])
        raise IntakeError("operators", f"model-local functions are refused: {names}")
    counts: dict[str, int] = {}
    refused: set[str] = set()
    for node in model.graph.node:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        key = f"{domain}:{node.op_type}" if domain else node.op_type
        counts[key] = counts.get(key, 0) + 1
        if node.op_type not in ALLOWED_OPS.get(domain, frozenset()):
            refused.add(key)
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            refused.add(f"{key} (subgraph)")
    if refused:
        raise IntakeError(
            "operators",
            "operators outside the allow-list: "
            + ", ".join(sorted(refused))
            + " (control flow, random, string, sequence and custom operators are refused)",
        )
    return counts


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def conform(model: onnx.ModelProto, n_features: int) -> onnx.ModelProto:
    """The graph with input ``features`` [N, n_features] float32 and output ``probabilities``
    [N, 2]; ``IntakeError`` when its interface cannot be read that way."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise IntakeError(
            "interface",
            f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); it must take one "
            "float tensor [N, n_features]",
        )
    inp = inputs[0]
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise IntakeError(
            "interface", f"input {inp.name!r} is not float32 (elem type {inp.type.tensor_type.elem_type})"
        )
    dims = _dims(inp)
    if len(dims) != 2 or (isinstance(dims[1], int) and dims[1] not in (0, n_features)):
        raise IntakeError(
            "interface",
            f"input {inp.name!r} has shape {dims}; with the {n_features} features named it must be "
            f"[N, {n_features}]",
        )
    model = onnx.ModelProto.FromString(model.SerializeToString())  # a copy to rename in
    graph = model.graph
    if inp.name != INPUT_NAME:
        old = inp.name
        for node in graph.node:
            node.input[:] = [INPUT_NAME if x == old else x for x in node.input]
        for out in graph.output:
            if out.name == old:
                raise IntakeError("interface", "the model's input is also its output")
        for i in graph.input:
            if i.name == old:
                i.name = INPUT_NAME
    dim = graph.input[[i.name for i in graph.input].index(INPUT_NAME)].type.tensor_type.shape.dim[1]
    dim.Clear()
    dim.dim_value = n_features

    outputs = list(graph.output)
    tensors = [o for o in outputs if o.type.HasField("tensor_type")]
    if any(not o.type.HasField("tensor_type") for o in outputs):
        non_tensor = [o.name for o in outputs if not o.type.HasField("tensor_type")]
        if not any(o.name == OUTPUT_NAME for o in tensors):
            raise IntakeError(
                "interface",
                f"outputs {non_tensor} are not tensors (a ZipMap?): convert with zipmap disabled "
                "(skl2onnx: options={'zipmap': False})",
            )
    named = [o for o in tensors if o.name == OUTPUT_NAME]
    if named:
        chosen = named[0]
    else:
        floats = [o for o in tensors if o.type.tensor_type.elem_type == TensorProto.FLOAT]
        if len(floats) != 1:
            raise IntakeError(
                "interface",
                f"cannot tell the probability output among {[o.name for o in tensors]}: name it "
                f"{OUTPUT_NAME!r} ([N, 2]) or output one float tensor",
            )
        chosen = floats[0]
    if chosen.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise IntakeError("interface", f"output {chosen.name!r} is not float32")
    out_dims = _dims(chosen)
    width = out_dims[1] if len(out_dims) == 2 else (1 if len(out_dims) == 1 else None)
    if width not in (1, 2):
        raise IntakeError(
            "interface",
            f"output {chosen.name!r} has shape {out_dims}: expected [N, 2] or [N, 1] probabilities "
            "(with a fixed second dimension)",
        )
    src = chosen.name
    keep = [o for o in graph.output if o.name == src]
    del graph.output[:]
    if src == OUTPUT_NAME and width != 2:
        # One column already named ``probabilities`` (PyTorch's export with the README's names): it
        # becomes the P(fraud) input of the [1 - p, p] below, which takes the name.
        src = "fraudops_p_in"
        for node in graph.node:
            node.input[:] = [src if x == OUTPUT_NAME else x for x in node.input]
            node.output[:] = [src if x == OUTPUT_NAME else x for x in node.output]
        for info in graph.value_info:
            if info.name == OUTPUT_NAME:
                info.name = src
    if width == 2 and src == OUTPUT_NAME:
        graph.output.extend(keep)
    elif width == 2:
        graph.node.append(helper.make_node("Identity", [src], [OUTPUT_NAME], name="fraudops_probabilities"))
        graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 2]))
    else:
        # One column (or a vector) of P(fraud): probabilities = [1 - p, p].
        if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("", 15))
        graph.initializer.append(helper.make_tensor("fraudops_one", TensorProto.FLOAT, [], [1.0]))
        graph.initializer.append(helper.make_tensor("fraudops_col", TensorProto.INT64, [2], [-1, 1]))
        graph.node.extend(
            [
                helper.make_node("Reshape", [src, "fraudops_col"], ["fraudops_p"], name="fraudops_p"),
                helper.make_node("Sub", ["fraudops_one", "fraudops_p"], ["fraudops_q"], name="fraudops_q"),
                helper.make_node(
                    "Concat",
                    ["fraudops_q", "fraudops_p"],
                    [OUTPUT_NAME],
                    axis=1,
                    name="fraudops_probabilities",
                ),
            ]
        )
        graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 2]))
    try:
        onnx.checker.check_model(model)
    except Exception as err:
        raise IntakeError("interface", f"the model does not pass the ONNX checker: {err}") from err
    return model
