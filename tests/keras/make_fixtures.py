#!/usr/bin/python3
"""Writes .keras files in Keras 3's exact layout, and their expected outputs computed in numpy.

Keras itself is not needed: config.json is written as Keras 3 serializes models, and
model.weights.h5 (with h5py) as keras/src/saving/saving_lib.py lays it out:
  layers/<class name in snake_case, numbered by class in layer order>/vars/<i>
with nested objects in their own groups (an LSTM's cell, MultiHeadAttention's projections), and
the optimizer's variables under optimizer/vars. The layouts written:
  - "v30": Keras 3.0, every object gets a vars group (empty ones too), no name attributes,
    MultiHeadAttention's projections under their private names (_query_dense);
  - "v31" (Functional only): Keras 3.1 to 3.5, as 3.0 but the projections under their public
    names (query_dense), which saving_lib visits first from 3.1 on;
  - "current": Keras 3.6 and later, vars groups carry the object's name as an attribute,
    projections under query_dense, ..., a Dropout's seed generator beside it.
The forward pass of every layer is written out below in numpy, independently of the engine.

Usage: make_fixtures.py OUTPUT_DIR
Writes <model>_<layout>.keras, <model>_inputs.safetensors and <model>_expected.safetensors for the
models "sequential" and "functional", and masked_current.keras (Embedding's mask through an LSTM
into a mask-aware average); unsupported_layer.keras (a Conv1D) and mismatched_names.keras
(stored names that contradict the layer order) and refused_*.keras for the refusals.
"""
import io
import json
import struct
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np

RNG = np.random.default_rng(20261205)


def rand(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


# ---- numpy forward passes (Keras 3 semantics) ------------------------------------------------

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ACTIVATIONS = {"linear": lambda x: x, "relu": lambda x: np.maximum(x, 0), "tanh": np.tanh,
               "sigmoid": sigmoid, "softmax": softmax}


def dense(x, kernel, bias, activation):
    return ACTIVATIONS[activation](x @ kernel + bias)


def lstm(x, kernel, recurrent, bias, mask=None):
    """Keras's LSTM, gates i, f, c, o; returns (sequence, h, c). A masked step keeps the previous
    state and repeats the previous output."""
    batch, steps, _ = x.shape
    units = recurrent.shape[0]
    h = np.zeros((batch, units))
    c = np.zeros((batch, units))
    outputs = []
    for t in range(steps):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h_new = sigmoid(o) * np.tanh(c_new)
        keep = np.ones((batch, 1)) if mask is None else mask[:, t:t + 1]
        c = keep * c_new + (1 - keep) * c
        h = keep * h_new + (1 - keep) * h
        outputs.append(h)
    return np.stack(outputs, axis=1), h, c


def layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(axis=-1, keepdims=True)
    variance = x.var(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(variance + epsilon)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def pool1d(x, pool, stride, padding, reduce):
    steps = x.shape[1]
    if padding == "valid":
        count = (steps - pool) // stride + 1
        starts = [k * stride for k in range(count)]
        pad_before = 0
    else:
        count = -(-steps // stride)
        pad_before = max((count - 1) * stride + pool - steps, 0) // 2
        starts = [k * stride - pad_before for k in range(count)]
    windows = [x[:, max(s, 0):min(s + pool, steps)] for s in starts]
    return np.stack([reduce(w, axis=1) for w in windows], axis=1)


def multi_head_attention(query, value, w, key_dim):
    key = value
    q = np.einsum("btd,dhk->bthk", query, w["query.kernel"]) + w["query.bias"]
    k = np.einsum("btd,dhk->bthk", key, w["key.kernel"]) + w["key.bias"]
    v = np.einsum("btd,dhk->bthk", value, w["value.kernel"]) + w["value.bias"]
    scores = np.einsum("bshk,bthk->bhts", k, q / np.sqrt(key_dim))
    context = np.einsum("bhts,bshk->bthk", softmax(scores), v)
    return np.einsum("bthk,hko->bto", context, w["attention_output.kernel"]) + w["attention_output.bias"]


def luong_attention(query, value, scale, causal):
    scores = scale * query @ value.transpose(0, 2, 1)
    if causal:
        steps_q, steps_v = scores.shape[1:]
        future = np.triu(np.ones((steps_q, steps_v)), k=1)
        scores = scores - 1e9 * future
    return softmax(scores) @ value


# ---- writing Keras's files -------------------------------------------------------------------

def policy(layout):
    if layout == "v30":
        return "float32"
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}


def initializer(class_name):
    return {"module": "keras.initializers", "class_name": class_name, "config": {"seed": None},
            "registered_name": None}


def layer_entry(class_name, config, layout, module="keras.layers"):
    config = dict(config)
    config.setdefault("trainable", True)
    config["dtype"] = policy(layout)
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


def tensor(name, index=0, shape=None):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": shape or [None], "dtype": "float32", "keras_history": [name, 0, index]}}


def call(args, kwargs=None):
    return [{"args": args, "kwargs": kwargs or {}}]


class WeightsWriter:
    """model.weights.h5 as saving_lib's H5IOStore writes it."""

    def __init__(self, layout):
        self.layout = layout
        self.buffer = io.BytesIO()
        self.file = h5py.File(self.buffer, "w")

    def object(self, path, name, variables):
        """Variables of one object at `path`; later layouts add the name attribute, and write no
        group for an object with neither variables nor a name."""
        group = self.file.require_group(path + "/vars" if path else "vars")
        if self.layout == "current" and name is not None:
            group.attrs["name"] = name
        for i, value in enumerate(variables):
            group[str(i)] = value

    def close(self):
        self.file.close()
        return self.buffer.getvalue()


def write_keras(path, config, weights, compression):
    version = "3.0.5" if "v30" in path.name else "3.3.3" if "v31" in path.name else "3.6.0"
    metadata = {"keras_version": version, "date_saved": "2026-12-05@00:00:00"}
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        # A fixed date, so that regenerating changes no byte unless the contents change.
        for name, data in [("metadata.json", json.dumps(metadata)), ("config.json", json.dumps(config)),
                           ("model.weights.h5", weights)]:
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 12, 5, 0, 0, 0)), data, compress_type=compression)


def write_safetensors(path, tensors):
    header, data = {}, b""
    for name in sorted(tensors):
        value = np.ascontiguousarray(tensors[name], dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(value.shape), "data_offsets": [len(data), len(data) + value.nbytes]}
        data += value.tobytes()
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def optimizer_state(writer, weights):
    writer.object("optimizer", "adam", [np.array(3, dtype=np.int64), np.array(0.001, dtype=np.float32)] +
                  [np.zeros_like(w) for w in weights])


# ---- the Sequential model: Embedding, Dropout, LSTM, LayerNormalization, poolings, Flatten,
# Reshape, Dense, Activation --------------------------------------------------------------------

def sequential_weights():
    return {
        "embedding": rand(20, 8),
        "lstm": (rand(8, 20), rand(5, 20), rand(20, scale=0.1)),
        "layer_normalization": (1 + rand(5, scale=0.1), rand(5, scale=0.1)),
        "dense": (rand(3, 4), rand(4, scale=0.1)),
    }


def sequential_forward(w, tokens):
    x = w["embedding"][tokens.astype(np.int64)]
    x, _, _ = lstm(x, *w["lstm"])
    x = layer_norm(x, *w["layer_normalization"], 1e-3)
    x = pool1d(x, 2, 2, "valid", np.max)
    x = pool1d(x, 2, 1, "same", np.mean)
    x = x.reshape(x.shape[0], -1).reshape(x.shape[0], 5, 3)
    x = x.max(axis=1)
    x = dense(x, *w["dense"], "tanh")
    return softmax(x)


def sequential_model(layout, w):
    layers = []
    if layout == "current":
        # A fixed batch size, as `keras.Input(batch_size=2, ...)` leaves in the config.
        layers.append({"module": "keras.layers", "class_name": "InputLayer",
                       "config": {"batch_shape": [2, 6], "dtype": "float32", "sparse": False, "name": "tokens"},
                       "registered_name": None})
    spec = [
        ("Embedding", {"name": "embedding", "input_dim": 20, "output_dim": 8,
                       "embeddings_initializer": initializer("RandomUniform"), "mask_zero": False}),
        ("Dropout", {"name": "dropout", "rate": 0.3, "seed": None, "noise_shape": None}),
        ("LSTM", {"name": "lstm", "units": 5, "activation": "tanh", "recurrent_activation": "sigmoid",
                  "use_bias": True, "kernel_initializer": initializer("GlorotUniform"),
                  "recurrent_initializer": initializer("Orthogonal"), "bias_initializer": initializer("Zeros"),
                  "unit_forget_bias": True, "kernel_regularizer": None, "dropout": 0.0, "recurrent_dropout": 0.0,
                  "seed": None, "return_sequences": True, "return_state": False, "go_backwards": False,
                  "stateful": False, "unroll": False, "zero_output_for_mask": False}),
        ("LayerNormalization", {"name": "layer_normalization", "axis": -1, "epsilon": 0.001, "center": True,
                                "scale": True, "rms_scaling": False}),
        ("MaxPooling1D", {"name": "max_pooling1d", "pool_size": [2], "padding": "valid", "strides": [2],
                          "data_format": "channels_last"}),
        ("AveragePooling1D", {"name": "average_pooling1d", "pool_size": [2], "padding": "same", "strides": [1],
                              "data_format": "channels_last"}),
        ("Flatten", {"name": "flatten", "data_format": "channels_last"}),
        ("Reshape", {"name": "reshape", "target_shape": [5, 3]}),
        ("GlobalMaxPooling1D", {"name": "global_max_pooling1d", "data_format": "channels_last", "keepdims": False}),
        ("Dense", {"name": "dense", "units": 4, "activation": "tanh", "use_bias": True,
                   "kernel_initializer": initializer("GlorotUniform"), "bias_initializer": initializer("Zeros"),
                   "kernel_regularizer": None, "bias_regularizer": None}),
        ("Activation", {"name": "activation", "activation": "softmax"}),
    ]
    for class_name, config in spec:
        entry = layer_entry(class_name, config, layout)
        if layout == "current" and class_name == "Embedding":
            entry["build_config"] = {"input_shape": [2, 6]}
        layers.append(entry)
    model_config = {"name": "sequential", "trainable": True, "dtype": policy(layout), "layers": layers}
    if layout == "v30":
        model_config["build_input_shape"] = [None, 6]
    adam = {"name": "adam", "learning_rate": 0.002, "weight_decay": None, "clipnorm": None, "global_clipnorm": None,
            "clipvalue": None, "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
            "loss_scale_factor": None, "gradient_accumulation_steps": None, "beta_1": 0.9, "beta_2": 0.999,
            "epsilon": 1e-07, "amsgrad": False}
    compile_config = {"optimizer": {"module": "keras.optimizers", "class_name": "Adam", "config": adam,
                                    "registered_name": None},
                      "loss": "categorical_crossentropy", "loss_weights": None, "metrics": ["accuracy"],
                      "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}
    config = {"module": "keras", "class_name": "Sequential", "config": model_config, "registered_name": None,
              "compile_config": compile_config}

    writer = WeightsWriter(layout)
    writer.object("", "sequential", [])
    writer.object("layers/embedding", "embedding", [w["embedding"]])
    writer.object("layers/dropout", "dropout", [])
    if layout == "current":
        writer.object("layers/dropout/seed_generator", "seed_generator", [np.array([0, 7], dtype=np.uint32)])
    writer.object("layers/lstm", "lstm", [])
    writer.object("layers/lstm/cell", "lstm_cell", list(w["lstm"]))
    writer.object("layers/layer_normalization", "layer_normalization", list(w["layer_normalization"]))
    for key in ["max_pooling1d", "average_pooling1d", "flatten", "reshape", "global_max_pooling1d"]:
        writer.object("layers/" + key, key, [])
    writer.object("layers/dense", "dense", list(w["dense"]))
    writer.object("layers/activation", "activation", [])
    optimizer_state(writer, [w["embedding"], *w["lstm"], *w["dense"]])
    return config, writer.close()


# ---- the Functional model: two inputs, MultiHeadAttention, Attention with a causal mask, LSTM
# states, Add/Multiply as layers and as keras.ops, Concatenate, GlobalAveragePooling1D ------------

def functional_weights():
    return {
        "emb": rand(30, 6),
        "mha": {"query.kernel": rand(6, 2, 3), "query.bias": rand(2, 3, scale=0.1),
                "key.kernel": rand(6, 2, 3), "key.bias": rand(2, 3, scale=0.1),
                "value.kernel": rand(6, 2, 3), "value.bias": rand(2, 3, scale=0.1),
                "attention_output.kernel": rand(2, 3, 6), "attention_output.bias": rand(6, scale=0.1)},
        "att": np.array(0.7, dtype=np.float32),
        "lstm": (rand(6, 16), rand(4, 16), rand(16, scale=0.1)),
        "norm": 1 + rand(16, scale=0.1),
        "head": (rand(16, 4), rand(4, scale=0.1)),
    }


MHA_ORDER = ["query", "key", "value", "attention_output"]


def functional_forward(w, tokens, features):
    embedded = w["emb"][tokens.astype(np.int64)]
    summed = embedded + features
    attended = multi_head_attention(summed, features, w["mha"], 3)
    luong = luong_attention(attended, features, w["att"], causal=True)
    sequence, h, c = lstm(features, *w["lstm"])
    add_layer = attended + luong
    product = luong * features
    joined = np.concatenate([add_layer, product, sequence], axis=-1)
    normalized = layer_norm(joined, w["norm"], None, 1e-3)
    pooled = normalized.mean(axis=1)
    head = dense(pooled, *w["head"], "sigmoid")
    return {"gate": head * h, "lstm:2": c}


def functional_model(layout, w):
    def entry(class_name, config, inbound, module="keras.layers"):
        e = layer_entry(class_name, config, layout, module)
        e["name"] = config["name"]
        e["inbound_nodes"] = inbound
        return e

    def input_layer(name, shape):
        return {"module": "keras.layers", "class_name": "InputLayer",
                "config": {"batch_shape": [None] + shape, "dtype": "float32", "sparse": False, "name": name},
                "registered_name": None, "name": name, "inbound_nodes": []}

    mha_kwargs = {} if layout == "v30" else {"query": tensor("add"), "value": tensor("features")}
    mha_args = [tensor("add"), tensor("features")] if layout == "v30" else []
    layers = [
        input_layer("tokens", [5]),
        input_layer("features", [5, 6]),
        entry("Embedding", {"name": "emb", "input_dim": 30, "output_dim": 6,
                            "embeddings_initializer": initializer("RandomUniform"), "mask_zero": False},
              call([tensor("tokens")])),
        # `emb + features` in the model's code: an operation, not a layer (no weights group).
        {"module": "keras.src.ops.numpy", "class_name": "Add", "config": {"name": "add"}, "registered_name": "Add",
         "name": "add", "inbound_nodes": call([tensor("emb"), tensor("features")])},
        entry("MultiHeadAttention", {"name": "mha", "num_heads": 2, "key_dim": 3, "value_dim": 3, "dropout": 0.0,
                                     "use_bias": True, "output_shape": None, "attention_axes": [1],
                                     "kernel_initializer": initializer("GlorotUniform"),
                                     "bias_initializer": initializer("Zeros"), "seed": None},
              call(mha_args, mha_kwargs)),
        entry("Attention", {"name": "att", "use_scale": True, "score_mode": "dot", "dropout": 0.0, "seed": None},
              call([[tensor("mha"), tensor("features")]], {"use_causal_mask": True})),
        entry("LSTM", {"name": "lstm", "units": 4, "activation": "tanh", "recurrent_activation": "sigmoid",
                       "use_bias": True, "unit_forget_bias": True, "dropout": 0.0, "recurrent_dropout": 0.0,
                       "return_sequences": True, "return_state": True, "go_backwards": False, "stateful": False,
                       "unroll": False},
              call([tensor("features")])),
        entry("Add", {"name": "add_layer"}, call([[tensor("mha"), tensor("att")]])),
        entry("Multiply", {"name": "product"}, call([[tensor("att"), tensor("features")]])),
        entry("Concatenate", {"name": "joined", "axis": -1},
              call([[tensor("add_layer"), tensor("product"), tensor("lstm", 0)]])),
        entry("LayerNormalization", {"name": "norm", "axis": -1, "epsilon": 0.001, "center": False, "scale": True},
              call([tensor("joined")])),
        entry("GlobalAveragePooling1D", {"name": "pooled", "data_format": "channels_last", "keepdims": False},
              call([tensor("norm")])),
        entry("Dense", {"name": "head", "units": 4, "activation": "sigmoid", "use_bias": True},
              call([tensor("pooled")])),
        entry("Dropout", {"name": "drop", "rate": 0.5, "seed": None, "noise_shape": None}, call([tensor("head")])),
        {"module": "keras.src.ops.numpy", "class_name": "Multiply", "config": {"name": "gate"},
         "registered_name": "Multiply", "name": "gate",
         "inbound_nodes": call([tensor("drop"), tensor("lstm", 1)])},
    ]
    if layout == "v30":
        inputs = [[["tokens", 0, 0]], [["features", 0, 0]]]  # nested, as older versions wrote them
    else:
        inputs = [["tokens", 0, 0], ["features", 0, 0]]
    config = {"module": "keras.src.models.functional", "class_name": "Functional",
              "config": {"name": "two_inputs", "trainable": True, "layers": layers, "input_layers": inputs,
                         "output_layers": [["gate", 0, 0], ["lstm", 0, 2]]},
              "registered_name": "Functional",
              "compile_config": {"optimizer": {"module": "keras.optimizers", "class_name": "RMSprop",
                                               "config": {"name": "rmsprop", "learning_rate": 0.001}},
                                 "loss": {"module": "keras.losses", "class_name": "MeanSquaredError",
                                          "config": {"name": "mean_squared_error"}, "registered_name": None},
                                 "metrics": ["mae"]}}

    writer = WeightsWriter(layout)
    writer.object("", "two_inputs", [])
    if layout != "current":  # before 3.6 Keras made a vars group for every layer, InputLayers included
        writer.object("layers/input_layer", None, [])
        writer.object("layers/input_layer_1", None, [])
    writer.object("layers/embedding", "emb", [w["emb"]])
    writer.object("layers/multi_head_attention", "mha", [])
    for keras_name, engine_name in zip(["query_dense", "key_dense", "value_dense", "output_dense"], MHA_ORDER):
        path = "layers/multi_head_attention/" + ("_" if layout == "v30" else "") + keras_name
        writer.object(path, engine_name, [w["mha"][engine_name + ".kernel"], w["mha"][engine_name + ".bias"]])
    writer.object("layers/attention", "att", [w["att"]])
    writer.object("layers/lstm", "lstm", [])
    writer.object("layers/lstm/cell", "lstm_cell", list(w["lstm"]))
    writer.object("layers/add", "add_layer", [])
    writer.object("layers/multiply", "product", [])
    writer.object("layers/concatenate", "joined", [])
    writer.object("layers/layer_normalization", "norm", [w["norm"]])
    writer.object("layers/global_average_pooling1d", "pooled", [])
    writer.object("layers/dense", "head", list(w["head"]))
    writer.object("layers/dropout", "drop", [])
    optimizer_state(writer, [w["emb"], *w["head"]])
    return config, writer.close()


def unsupported_model():
    layers = [layer_entry("Conv1D", {"name": "conv", "filters": 2, "kernel_size": [3]}, "current"),
              layer_entry("Dense", {"name": "dense", "units": 1}, "current")]
    config = {"module": "keras", "class_name": "Sequential",
              "config": {"name": "convolutional", "layers": layers, "build_input_shape": [None, 8, 3]}}
    writer = WeightsWriter("current")
    writer.object("layers/conv1d", "conv", [rand(3, 3, 2), rand(2)])
    writer.object("layers/dense", "dense", [rand(6, 1), rand(1)])
    return config, writer.close()


# ---- a masked Sequential model: Embedding(mask_zero) into an LSTM and a mask-aware average --------

def masked_weights():
    return {"embedding": rand(12, 4), "lstm": (rand(4, 12), rand(3, 12), rand(12, scale=0.1)),
            "dense": (rand(3, 1), rand(1, scale=0.1))}


def masked_forward(w, tokens):
    ids = tokens.astype(np.int64)
    mask = (ids != 0).astype(np.float64)
    sequence, _, _ = lstm(w["embedding"][ids], *w["lstm"], mask=mask)
    pooled = (sequence * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    return dense(pooled, *w["dense"], "sigmoid")


def masked_model(w):
    layers = [{"module": "keras.layers", "class_name": "InputLayer",
               "config": {"batch_shape": [None, 7], "dtype": "int32", "sparse": False, "name": "words"},
               "registered_name": None}]
    for class_name, config in [
            ("Embedding", {"name": "embedding", "input_dim": 12, "output_dim": 4, "mask_zero": True}),
            ("LSTM", {"name": "lstm", "units": 3, "return_sequences": True}),
            ("GlobalAveragePooling1D", {"name": "global_average_pooling1d", "data_format": "channels_last",
                                        "keepdims": False}),
            ("Dense", {"name": "dense", "units": 1, "activation": "sigmoid"})]:
        layers.append(layer_entry(class_name, config, "current"))
    config = {"module": "keras", "class_name": "Sequential",
              "config": {"name": "masked", "trainable": True, "layers": layers}, "registered_name": None}
    writer = WeightsWriter("current")
    writer.object("", "masked", [])
    writer.object("layers/embedding", "embedding", [w["embedding"]])
    writer.object("layers/lstm", "lstm", [])
    writer.object("layers/lstm/cell", "lstm_cell", list(w["lstm"]))
    writer.object("layers/global_average_pooling1d", "global_average_pooling1d", [])
    writer.object("layers/dense", "dense", list(w["dense"]))
    return config, writer.close()


def mismatched_names_model():
    """Two Dense layers whose stored names say the file's groups are in another order than the config's."""
    layers = [layer_entry("Dense", {"name": "first", "units": 2}, "current"),
              layer_entry("Dense", {"name": "second", "units": 2}, "current")]
    config = {"module": "keras", "class_name": "Sequential",
              "config": {"name": "swapped", "layers": layers, "build_input_shape": [None, 2]}}
    writer = WeightsWriter("current")
    writer.object("layers/dense", "second", [rand(2, 2), rand(2)])
    writer.object("layers/dense_1", "first", [rand(2, 2), rand(2)])
    return config, writer.close()


def small_functional(layers, outputs, weights):
    """A Functional model over one input `x` of 4 features, for the refusals."""
    x = {"module": "keras.layers", "class_name": "InputLayer",
         "config": {"batch_shape": [None, 4], "dtype": "float32", "sparse": False, "name": "x"},
         "registered_name": None, "name": "x", "inbound_nodes": []}
    config = {"module": "keras.src.models.functional", "class_name": "Functional",
              "config": {"name": "small", "layers": [x] + layers, "input_layers": [["x", 0, 0]],
                         "output_layers": outputs}}
    writer = WeightsWriter("current")
    for path, name, variables in weights:
        writer.object(path, name, variables)
    return config, writer.close()


def functional_layer(class_name, config, inbound):
    entry = layer_entry(class_name, config, "current")
    entry["name"] = config["name"]
    entry["inbound_nodes"] = inbound
    return entry


def refusal_models():
    """Files a faithful import must refuse, by name: each breaks one thing the engine cannot do."""
    dense = {"units": 4, "activation": "linear", "use_bias": True}
    shared = functional_layer("Dense", dict(dense, name="shared"),
                              call([tensor("x")]) + call([tensor("shared")]))
    shared["inbound_nodes"][1]["args"][0]["config"]["keras_history"] = ["shared", 0, 0]
    yield "shared_layer", small_functional(
        [shared], [["shared", 1, 0]], [("layers/dense", "shared", [rand(4, 4), rand(4)])])
    yield "rms_scaling", small_functional(
        [functional_layer("LayerNormalization", {"name": "norm", "axis": -1, "epsilon": 1e-3, "center": True,
                                                 "scale": True, "rms_scaling": True}, call([tensor("x")]))],
        [["norm", 0, 0]], [("layers/layer_normalization", "norm", [rand(4), rand(4)])])
    quantized = functional_layer("Dense", dict(dense, name="small_int8"), call([tensor("x")]))
    quantized["config"]["dtype"] = {"module": "keras", "class_name": "QuantizedDTypePolicy",
                                    "config": {"name": "int8_from_float32"}, "registered_name": None}
    yield "quantized", small_functional(
        [quantized], [["small_int8", 0, 0]],
        [("layers/dense", "small_int8", [np.ones((4, 4), np.int8), rand(4), rand(4)])])
    yield "mask_argument", small_functional(
        [functional_layer("Attention", {"name": "att", "use_scale": False},
                          call([[tensor("x"), tensor("x")]], {"mask": [tensor("x"), None]}))],
        [["att", 0, 0]], [])
    yield "constant_operand", small_functional(
        [{"module": "keras.src.ops.numpy", "class_name": "Add", "config": {"name": "add"}, "registered_name": "Add",
          "name": "add", "inbound_nodes": call([tensor("x"), 1.0])}],
        [["add", 0, 0]], [])


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)

    w = sequential_weights()
    tokens = RNG.integers(0, 20, size=(3, 6)).astype(np.float32)
    # "tokens" is the InputLayer's name; the 3.0 file has none and its input gets nngraph's default name.
    write_safetensors(out / "sequential_inputs.safetensors", {"tokens": tokens, "input": tokens})
    write_safetensors(out / "sequential_expected.safetensors", {"activation": sequential_forward(w, tokens)})
    for layout, compression in [("v30", zipfile.ZIP_STORED), ("current", zipfile.ZIP_DEFLATED)]:
        write_keras(out / f"sequential_{layout}.keras", *sequential_model(layout, w), compression)

    w = functional_weights()
    tokens = RNG.integers(0, 30, size=(3, 5)).astype(np.float32)
    features = rand(3, 5, 6, scale=1.0)
    write_safetensors(out / "functional_inputs.safetensors", {"tokens": tokens, "features": features})
    write_safetensors(out / "functional_expected.safetensors", functional_forward(w, tokens, features))
    for layout, compression in [("v30", zipfile.ZIP_STORED), ("v31", zipfile.ZIP_DEFLATED),
                                ("current", zipfile.ZIP_DEFLATED)]:
        write_keras(out / f"functional_{layout}.keras", *functional_model(layout, w), compression)

    w = masked_weights()
    # Padded before and after, and one row with padding inside, as pad_sequences and hand-made data give.
    words = np.array([[0, 0, 3, 5, 7, 1, 2], [4, 4, 9, 11, 0, 0, 0], [6, 0, 8, 0, 10, 2, 0]], dtype=np.float32)
    write_safetensors(out / "masked_inputs.safetensors", {"words": words})
    write_safetensors(out / "masked_expected.safetensors", {"dense": masked_forward(w, words)})
    write_keras(out / "masked_current.keras", *masked_model(w), zipfile.ZIP_DEFLATED)

    write_keras(out / "unsupported_layer.keras", *unsupported_model(), zipfile.ZIP_DEFLATED)
    write_keras(out / "mismatched_names.keras", *mismatched_names_model(), zipfile.ZIP_DEFLATED)
    for name, (config, weights) in refusal_models():
        write_keras(out / f"refused_{name}.keras", config, weights, zipfile.ZIP_DEFLATED)


if __name__ == "__main__":
    main()
