"""Fuzzing every public function with bad inputs: each must raise a ValueError or TypeError
whose message names the argument, and valid inputs (half precision included) must give
finite outputs.

The table :data:`ENTRIES` holds, per public function, a valid call and the kind of each of its
data arguments; every kind knows its bad values (wrong rank or shape, bool/int/complex where
floats are needed, empty arrays, NaN/inf, out-of-range scalars, huge sizes, Python lists,
None). The tests draw bad calls with hypothesis at a fixed seed; ``DIFFUSIONLAB_FUZZ_EXAMPLES``
sets the examples per function. By default the suite draws one bad call per function and
skips the valid-call and half-precision checks (each compiles every function again);
``DIFFUSIONLAB_FUZZ_LONG=1`` runs them all with 3 examples per function.
``python tests/fuzz_tally.py`` runs the whole table and counts the outcomes by kind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import re
import signal
import sys
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LONG = os.environ.get("DIFFUSIONLAB_FUZZ_LONG", "") == "1"
EXAMPLES = int(os.environ.get("DIFFUSIONLAB_FUZZ_EXAMPLES", "3" if LONG else "1"))
_LONG_ONLY = pytest.mark.skipif(not LONG, reason="compiles every function again: "
                                "DIFFUSIONLAB_FUZZ_LONG=1 runs it")
# Long enough that only a hang exceeds it, not a slow compile on a busy machine.
CALL_TIMEOUT = float(os.environ.get("DIFFUSIONLAB_FUZZ_TIMEOUT", "300"))
HUGE = 10**12

# --------------------------------------------------------------------------- argument kinds


class Kind:
    """An argument kind: ``bad(v)`` lists (label, value) pairs of bad values for a valid ``v``;
    ``draw`` draws one of a label with hypothesis (by default the listed value itself)."""

    def bad(self, v):
        raise NotImplementedError

    def draw(self, data, label, v):
        return dict(self.bad(v))[label]


@dataclasses.dataclass(frozen=True)
class Floats(Kind):
    """A real floating array argument."""

    rank: bool = True  # whether adding or removing an axis is invalid
    mismatch: bool = False  # whether one more column on the last axis is invalid
    empty: bool = True  # whether a size-0 array is invalid
    # A size-0 batch is valid and must give size-0 outputs ("empty in, empty out"); see
    # test_empty_batches_give_empty_outputs. Implies empty=False.
    empty_batch: bool = False
    # A scalar broadcasts over the batch (so dropping the axis is valid); see
    # test_scalar_times_broadcast_over_the_batch.
    scalar: bool = False
    nonfinite: bool = True  # whether NaN/inf entries are invalid
    half: bool = True  # whether half precision must work (False for PRNG-free exact tests)
    ints: bool = False  # whether integer arrays are valid (graded labels, integer times)
    lists: bool = False  # whether Python lists are valid (host-side metrics)

    def bad(self, v):
        v = np.asarray(v)
        out = [("none", None), ("bool", v > 0), ("complex", v.astype(np.complex64))]
        if not self.lists:
            out.insert(1, ("list", v.tolist()))
        if not self.ints:
            out.append(("int", v.astype(np.int32)))
        if self.nonfinite:
            out += [("nan", _poke(v, np.nan)), ("inf", _poke(v, np.inf))]
        if self.empty and not self.empty_batch and v.ndim:
            out.append(("empty", v[:0]))
        if self.rank:
            out.append(("rank+", v[None]))
            if v.ndim and not self.scalar:
                out.append(("rank-", v[..., 0]))
        if self.mismatch and v.ndim:
            out.append(("shape", np.concatenate([v, v[..., :1]], axis=-1)))
        return out

    def draw(self, data, label, v):
        v = np.asarray(v)
        if label in ("nan", "inf") and v.size:
            index = data.draw(st.integers(0, v.size - 1), label="position")
            value = data.draw(st.sampled_from([np.nan] if label == "nan" else [np.inf, -np.inf]))
            return _poke(v, value, index)
        if label == "rank+":
            extra = data.draw(st.integers(1, 2), label="extra axes")
            return v.reshape((1,) * extra + v.shape)
        return super().draw(data, label, v)


@dataclasses.dataclass(frozen=True)
class Ints(Kind):
    """An integer array argument (token ids, labels) with entries in ``[low, high]``."""

    low: int | None = 0
    high: int | None = None
    rank: bool = True
    empty: bool = True

    def bad(self, v):
        v = np.asarray(v)
        out = [("none", None), ("list", v.tolist()), ("float", v.astype(np.float32))]
        if self.low is not None:
            out.append(("below", _poke(v, self.low - 1)))
        if self.high is not None:
            out.append(("above", _poke(v, self.high + 1)))
        if self.empty and v.ndim:
            out.append(("empty", v[:0]))
        if self.rank:
            out.append(("rank+", v[None]))
            if v.ndim:
                out.append(("rank-", v[..., 0]))
        return out

    def draw(self, data, label, v):
        v = np.asarray(v)
        if label == "below":
            return _poke(v, data.draw(st.integers(self.low - 10**6, self.low - 1)))
        if label == "above":
            return _poke(v, data.draw(st.integers(self.high + 1, self.high + 10**6)))
        return super().draw(data, label, v)


@dataclasses.dataclass(frozen=True)
class Int(Kind):
    """An integer scalar (a size, a count) in ``[low, high]``."""

    low: int | None = 1
    high: int | None = None
    huge: bool = True  # whether 10**12 is out of range (sizes the machine cannot hold)
    none_ok: bool = False  # whether None is valid (a default computed from other arguments)

    def bad(self, v):
        out = [("str", "3"), ("float", 2.5), ("nan", math.nan)]
        if not self.none_ok:
            out.insert(0, ("none", None))
        if self.low is not None:
            out.append(("below", self.low - 1))
            if self.low > 0:
                out.append(("negative", -1))
        if self.high is not None:
            out.append(("above", self.high + 1))
        if self.huge and (self.high is None or self.high < HUGE):
            out.append(("huge", HUGE))
        return out

    def draw(self, data, label, v):
        if label == "below":
            return data.draw(st.integers(self.low - 10**6, self.low - 1))
        if label == "above":
            return data.draw(st.integers(self.high + 1, self.high + 10**6))
        if label == "huge":
            return data.draw(st.integers(HUGE, 10**18))
        return super().draw(data, label, v)


@dataclasses.dataclass(frozen=True)
class Real(Kind):
    """A real scalar hyperparameter in the range ``low .. high``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    text_ok: bool = False  # whether a string such as "3/4" is a valid spelling

    def bad(self, v):
        out = [("none", None), ("complex", 0.5 + 1j), ("nan", math.nan), ("inf", math.inf)]
        if not self.text_ok:
            out.insert(1, ("str", "0.5"))
        if self.low is not None:
            out.append(("below", self.low if self.low_open else self.low - 1.0))
        if self.high is not None:
            out.append(("above", self.high if self.high_open else self.high + 1.0))
        return out

    def draw(self, data, label, v):
        if label == "below":
            delta = data.draw(st.floats(0.0 if self.low_open else 1e-3, 1e6))
            return self.low - delta
        if label == "above":
            delta = data.draw(st.floats(0.0 if self.high_open else 1e-3, 1e6))
            return self.high + delta
        return super().draw(data, label, v)


@dataclasses.dataclass(frozen=True)
class Choice(Kind):
    """A string naming one of a fixed set of options."""

    def bad(self, v):
        return [("none", None), ("unknown", "no-such-option"), ("int", 1)]

    def draw(self, data, label, v):
        if label == "unknown":
            return data.draw(st.text(alphabet="xyz_", min_size=1, max_size=8))
        return super().draw(data, label, v)


@dataclasses.dataclass(frozen=True)
class Key(Kind):
    """A JAX PRNG key."""

    def bad(self, v):
        return [("none", None), ("int", 0), ("float", np.zeros(2, np.float32))]


@dataclasses.dataclass(frozen=True)
class Fn(Kind):
    """A callable."""

    def bad(self, v):
        return [("none", None), ("number", 1.0)]


@dataclasses.dataclass(frozen=True)
class Obj(Kind):
    """An object of a given kind (a config, a process, a tokenizer)."""

    def bad(self, v):
        return [("none", None), ("number", 3)]


@dataclasses.dataclass(frozen=True)
class Seqs(Kind):
    """A sequence of token sequences (or one sequence with ``nested=False``) of ids in ``[low, high]``."""

    low: int = 0
    high: int | None = None
    nested: bool = True

    def bad(self, v):
        wrap = (lambda s: [s]) if self.nested else (lambda s: s)
        out = [("none", None), ("number", 3), ("below", wrap([self.low - 1]))]
        if self.high is not None:
            out.append(("above", wrap([self.high + 1])))
        if self.nested:
            out.append(("empty", []))
        return out


@dataclasses.dataclass(frozen=True)
class Text(Obj):
    """A string argument (a name, a path): bad values as for :class:`Obj`."""


def _poke(v, value, index=0):
    """A copy of ``v`` (cast to hold ``value``) with one entry replaced."""
    v = np.array(v)
    if isinstance(value, float) and not np.issubdtype(v.dtype, np.floating):
        v = v.astype(np.float32)
    if v.ndim == 0:
        return np.asarray(value, v.dtype)
    v.reshape(-1)[index % v.size] = value
    return v


# --------------------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class Entry:
    """One public function: a valid call and its fuzzed arguments.

    ``valid()`` returns the keyword arguments of a valid call; ``call(**kwargs)`` runs it.
    ``args`` maps an argument name to its kind. ``names`` gives, per argument, the words an
    error message may use for it (default: the argument's own name).
    """

    name: str
    call: Callable[..., Any]
    valid: Callable[[], dict]
    args: dict[str, Any]
    names: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    check_output: bool = True

    @property
    def module(self) -> str:
        return self.name.split(".")[0]

    def cases(self):
        """Every (argument, label, bad value) of this entry's table."""
        valid = self.valid()
        for arg, kind in self.args.items():
            for label, value in kind.bad(valid[arg]):
                yield arg, label, value

    def accepts(self, arg: str, message: str) -> bool:
        """Whether an error message names ``arg``."""
        words = self.names.get(arg, (arg,))
        return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(w)}(?![A-Za-z0-9_])", message)
                   for w in words)


def _key(seed=0):
    return jax.random.key(seed)


@functools.cache
def _lm():
    from flax import nnx

    from diffusionlab import lm
    config = lm.LMConfig(vocab_size=259, dim=16, depth=1, num_heads=2, mlp_dim=32, max_length=16)
    return lm.pure(lm.LanguageModel(config, rngs=nnx.Rngs(0)))


def _prompts():
    return np.array([[0, 5, 6, 7], [9, 10, 11, 12]], np.int32)


@functools.cache
def _prefilled():
    from diffusionlab import nbce
    apply, params = _lm()
    prompts = nbce.nbce_prompts([[5, 6], [7, 8, 9]], [10, 11])
    return nbce.nbce_prefill(apply, params, jnp.asarray(prompts), max_new_tokens=2)


@functools.cache
def _pair_task():
    from diffusionlab import cosent
    return cosent.synthetic_task("sts", num_train=40, num_valid=20, num_test=20, seed=0)


@functools.cache
def _pair_arrays():
    from diffusionlab import cosent
    task = _pair_task()
    tokenizer = cosent.Tokenizer.fit(task.train.texts_a + task.train.texts_b)
    return cosent.encode_task(task, tokenizer, kind="bi", max_length=16)


@functools.cache
def _tsv_dir():
    directory = _tmpdir()
    rows = "".join(f"a sentence {i}\tanother one {i}\t{i % 2}\n" for i in range(8))
    for split in ("train", "valid", "test"):
        with open(os.path.join(directory, f"toy.{split}.data"), "w") as f:
            f.write(rows)
    return directory


def _x(n=6, d=2, seed=0):
    return np.asarray(np.random.default_rng(seed).normal(size=(n, d)), np.float32)


def _mixture():
    from diffusionlab import scorematching
    return scorematching.GaussianMixture.ring(3)


def _score_fn(x_D):
    return -x_D


def _apply_params():
    return (lambda params, x: -params * x), jnp.float32(1.0)


def _phi():
    from diffusionlab import weakform
    return weakform.default_test_functions(2, key=_key(1), num=3)


def _ou_sampler(t, key):
    return jnp.exp(-t) + jax.random.normal(key, (400, 2)) * jnp.sqrt(0.5 + 0.0 * t)


def _ou_log_density(x, t):
    return -0.5 * jnp.sum(x**2)


def _velocity(t, x):
    return -x


def _hot():
    from diffusionlab import udm
    return udm.HotDiffusion(T=10, event_shape=(3,))


def _mask():
    from diffusionlab import udm
    return udm.MaskDiffusion(length=6, vocab=5)


def _edit():
    from diffusionlab import udm
    return udm.EditDiffusion(length=6, vocab=5)


def _cold():
    from diffusionlab import udm
    return udm.ColdDiffusion(T=5, event_shape=(8, 8, 1))


def _tokens(n=2, length=6, vocab=5, seed=0):
    return np.asarray(np.random.default_rng(seed).integers(0, vocab, size=(n, length)), np.int32)


def _logits(n=2, length=6, vocab=5, seed=0):
    return np.asarray(np.random.default_rng(seed).normal(size=(n, length, vocab)), np.float32)


def _images(n=2, seed=0):
    return np.asarray(np.random.default_rng(seed).uniform(size=(n, 8, 8, 1)), np.float32)


def _module_call(cls, **fixed):
    """Constructs the flax module ``cls`` with fixed rngs: its constructor is the call."""
    from flax import nnx

    def call(**kwargs):
        return cls(**kwargs, **fixed, rngs=nnx.Rngs(0))
    return call


def _entries() -> list[Entry]:
    from flax import nnx

    from diffusionlab import cosent, data, lm, nbce, nn, scorematching, sector, udm, weakform

    # Modules edited elsewhere may be mid-change: one that does not import is left out.
    odes, solve, metrics, train = (_try_import(m) for m in ("odes", "solve", "metrics", "train"))

    E = Entry
    F, I = Floats, Ints
    out: list[Entry] = []
    add = out.append

    # ---------------------------------------------------------------- cosent
    scores = lambda: np.linspace(-1, 1, 6).astype(np.float32)  # noqa: E731
    labels = lambda: np.array([0, 1, 0, 1, 1, 0], np.float32)  # noqa: E731
    add(E("cosent.cosent_loss", cosent.cosent_loss,
          lambda: dict(scores=scores(), labels=labels(), scale=20.0),
          dict(scores=F(), labels=F(ints=True), scale=Real(0, None, low_open=True))))
    add(E("cosent.cosent_loss_sorted", cosent.cosent_loss_sorted,
          lambda: dict(scores=scores(), labels=labels(), scale=20.0),
          dict(scores=F(), labels=F(ints=True), scale=Real(0, None, low_open=True))))
    add(E("cosent.sbert_softmax_loss", cosent.sbert_softmax_loss,
          lambda: dict(logits_Bx2=_x(6, 2), labels_B=np.array([0, 1, 1, 0, 1, 0], np.int32)),
          dict(logits_Bx2=F(mismatch=True), labels_B=I(0, 1))))
    add(E("cosent.cosine_mse_loss", cosent.cosine_mse_loss,
          lambda: dict(cosines_B=scores(), targets_B=labels()),
          dict(cosines_B=F(), targets_B=F(ints=True))))
    add(E("cosent.binary_cross_entropy_loss", cosent.binary_cross_entropy_loss,
          lambda: dict(logits_B=scores(), labels_B=labels()),
          dict(logits_B=F(), labels_B=F(ints=True))))
    add(E("cosent.sbert_features", cosent.sbert_features,
          lambda: dict(u_BxD=_x(4, 3), v_BxD=_x(4, 3, 1)),
          dict(u_BxD=F(mismatch=True), v_BxD=F(mismatch=True))))
    add(E("cosent.cosine_similarity", cosent.cosine_similarity,
          lambda: dict(u_BxD=_x(4, 3), v_BxD=_x(4, 3, 1)),
          dict(u_BxD=F(mismatch=True), v_BxD=F(mismatch=True))))
    add(E("cosent.spearman", cosent.spearman,
          lambda: dict(scores=scores(), labels=np.arange(6, dtype=np.float32)),
          dict(scores=F(ints=True, lists=True), labels=F(ints=True, lists=True))))
    add(E("cosent.accuracy", cosent.accuracy,
          lambda: dict(scores=scores(), labels=labels(), threshold=0.0),
          dict(scores=F(ints=True, lists=True), labels=F(ints=True, lists=True), threshold=Real())))
    add(E("cosent.search_threshold", cosent.search_threshold,
          lambda: dict(scores=scores(), labels=labels(), grid=16),
          dict(scores=F(ints=True, lists=True), labels=F(ints=True, lists=True), grid=Int(1, 10**6))))
    add(E("cosent.synthetic_task",
          lambda **k: cosent.synthetic_task(**k).train.labels,
          lambda: dict(name="sts", num_train=20, num_valid=10, num_test=10, seed=0),
          dict(name=Choice(), num_train=Int(1), num_valid=Int(1), num_test=Int(1),
               seed=Int(0, None, huge=False))))
    add(E("cosent.EncoderConfig", cosent.EncoderConfig,
          lambda: dict(vocab_size=50, dim=8, depth=1, num_heads=2, mlp_dim=16, pooling="mean"),
          dict(vocab_size=Int(1), dim=Int(1), depth=Int(1), num_heads=Int(1), mlp_dim=Int(1),
               pooling=Choice()), check_output=False))
    small = lambda: cosent.EncoderConfig(vocab_size=50, dim=8, depth=1, num_heads=2, mlp_dim=16)  # noqa: E731
    add(E("cosent.BiEncoder", _module_call(cosent.BiEncoder), lambda: dict(config=small()),
          dict(config=Obj()), check_output=False))
    add(E("cosent.CrossEncoder", _module_call(cosent.CrossEncoder), lambda: dict(config=small()),
          dict(config=Obj()), check_output=False))
    add(E("cosent.Tokenizer.fit", lambda **k: len(cosent.Tokenizer.fit(**k).vocab),
          lambda: dict(texts=["a b c", "b c d"], max_vocab=6, min_count=1),
          dict(texts=Obj(), max_vocab=Int(5, none_ok=True), min_count=Int(1))))
    add(E("cosent.TrainSettings", cosent.TrainSettings,
          lambda: dict(steps=2, batch_size=4, learning_rate=1e-3, eval_every=1, scale=20.0),
          dict(steps=Int(1), batch_size=Int(1), learning_rate=Real(0, None, low_open=True),
               eval_every=Int(1), scale=Real(0, None, low_open=True)), check_output=False))
    add(E("cosent.encode_task",
          lambda **k: cosent.encode_task(**k)["train"].labels,
          lambda: dict(task=_pair_task(),
                       tokenizer=cosent.Tokenizer.fit(_pair_task().train.texts_a),
                       kind="bi", max_length=8),
          dict(task=Obj(), tokenizer=Obj(), kind=Choice(), max_length=Int(1))))
    add(E("cosent.train_pair_models",
          lambda **k: cosent.train_pair_models(**k).test_scores,
          lambda: dict(kind="bi", losses=("cosent",), config=cosent.EncoderConfig(
              vocab_size=int(_pair_arrays()["train"].inputs[0].max()) + 1, dim=8, depth=1,
              num_heads=2, mlp_dim=16), arrays=_pair_arrays(), seeds=(0,),
              settings=cosent.TrainSettings(steps=2, batch_size=4, eval_every=2)),
          dict(kind=Choice(), losses=Obj(), config=Obj(), arrays=Obj(), seeds=Obj(),
               settings=Obj())))
    add(E("cosent.load_pair_tsv", lambda **k: cosent.load_pair_tsv(**k).labels,
          lambda: dict(path=os.path.join(_tsv_dir(), "toy.train.data")), dict(path=Text())))
    add(E("cosent.load_pair_task", lambda **k: cosent.load_pair_task(**k).train.labels,
          lambda: dict(directory=_tsv_dir(), name="toy"),
          dict(directory=Text(), name=Text())))

    # ---------------------------------------------------------------- data
    add(E("data.atoms1d", data.atoms1d, lambda: dict(num=8, key=_key()),
          dict(num=Int(1), key=Key())))
    add(E("data.toy2d", data.toy2d, lambda: dict(name="two_moons", num=8, key=_key()),
          dict(name=Choice(), num=Int(1), key=Key())))
    add(E("data.digits", data.digits, lambda: dict(split="test"), dict(split=Choice())))
    add(E("data.digit_tokens", data.digit_tokens, lambda: dict(split="test", levels=4),
          dict(split=Choice(), levels=Int(2, 17))))
    add(E("data.tokens_to_images", data.tokens_to_images,
          lambda: dict(tokens=_tokens(2, 64, 4).astype(np.int32), levels=4),
          dict(tokens=I(0, 3, rank=False), levels=Int(2, 17))))

    # ---------------------------------------------------------------- lm
    add(E("lm.LMConfig", lm.LMConfig,
          lambda: dict(vocab_size=259, dim=16, depth=1, num_heads=2, mlp_dim=32, max_length=16,
                       pad_id=0, shift=0),
          dict(vocab_size=Int(1), dim=Int(1), depth=Int(1), num_heads=Int(1), mlp_dim=Int(1),
               max_length=Int(1), pad_id=Int(0), shift=Int(0)), check_output=False))
    add(E("lm.LanguageModel", _module_call(lm.LanguageModel), lambda: dict(config=_lm()[0].config),
          dict(config=Obj()), check_output=False))
    add(E("lm.TokenShift", _module_call(lm.TokenShift), lambda: dict(dim=8, width=2),
          dict(dim=Int(1), width=Int(1)), check_output=False))
    add(E("lm.ByteTokenizer.encode", lambda text: lm.ByteTokenizer().encode(text),
          lambda: dict(text="abc"), dict(text=Text())))
    add(E("lm.ByteTokenizer.decode", lambda ids: lm.ByteTokenizer().decode(ids),
          lambda: dict(ids=[5, 6, 7]), dict(ids=Seqs(0, 258, nested=False))))
    add(E("lm.left_pad", lm.left_pad, lambda: dict(sequences=[[5, 6], [7]], pad_id=0, length=3),
          dict(sequences=Seqs(0), pad_id=Int(0), length=Int(1, none_ok=True))))
    add(E("lm.init_decode_cache", lambda **k: lm.init_decode_cache(**k).valid,
          lambda: dict(config=_lm()[0].config, batch_size=2, length=8),
          dict(config=Obj(), batch_size=Int(1), length=Int(1))))
    add(E("lm.pure", lambda model: lm.pure(model)[0].config,
          lambda: dict(model=lm.LanguageModel(_lm()[0].config, rngs=nnx.Rngs(0))),
          dict(model=Obj()), check_output=False))
    add(E("lm.LMApply.__call__", lambda tokens_BxL: _lm()[0](_lm()[1], tokens_BxL)[0],
          lambda: dict(tokens_BxL=_prompts()), dict(tokens_BxL=I(0, 258))))
    add(E("lm.LMApply.init_cache", lambda **k: _lm()[0].init_cache(**k).valid,
          lambda: dict(batch_size=2, length=8), dict(batch_size=Int(1), length=Int(1))))
    add(E("lm.generate", lambda **k: lm.generate(*_lm(), **k),
          lambda: dict(prompts_BxP=_prompts(), max_new_tokens=2, eos_id=2, temperature=0.5,
                       key=_key()),
          dict(prompts_BxP=I(0, 258), max_new_tokens=Int(1), eos_id=Int(-1, 258),
               temperature=Real(0, None), key=Key())))
    add(E("lm.uncached_generate", lambda **k: lm.uncached_generate(*_lm(), **k),
          lambda: dict(prompts_BxP=_prompts(), max_new_tokens=2),
          dict(prompts_BxP=I(0, 258), max_new_tokens=Int(1))))
    add(E("lm.QACorpus", lambda **k: lm.QACorpus(**k).single(2, np.random.default_rng(0)).question,
          lambda: dict(split="test", key_length=2, value_length=3, facts_per_document=(1, 3),
                       document_chars=(40, 90)),
          dict(split=Choice(), key_length=Int(1), value_length=Int(1),
               facts_per_document=Obj(), document_chars=Obj()), check_output=False))
    add(E("lm.training_set", lambda **k: lm.training_set(**k)["tokens"],
          lambda: dict(num_examples=4, seed=0, max_length=64),
          dict(num_examples=Int(1), seed=Int(0, None, huge=False), max_length=Int(2))))
    add(E("lm.LMTrainConfig", lm.LMTrainConfig,
          lambda: dict(num_examples=8, lm_weight=0.1, seed=0, mix=(0.6, 0.2, 0.1, 0.1)),
          dict(num_examples=Int(1), lm_weight=Real(0, None), seed=Int(0), mix=Obj()),
          check_output=False))
    add(E("lm.checkpoint_name", lm.checkpoint_name, lambda: dict(config=lm.LMTrainConfig()),
          dict(config=Obj()), check_output=False))
    add(E("lm.lm_loss", lambda apply, lm_weight: lm.lm_loss(apply, lm_weight=lm_weight),
          lambda: dict(apply=_lm()[0], lm_weight=0.1),
          dict(apply=Obj(), lm_weight=Real(0, None)), check_output=False))
    add(E("lm.save_lm", lambda **k: lm.save_lm(**k),
          lambda: dict(directory=_tmpdir(), config=_lm()[0].config, params=_lm()[1]),
          dict(directory=Text(), config=Obj())))
    add(E("lm.load_lm", lambda **k: lm.load_lm(**k)[0].config,
          lambda: dict(directory=_saved_lm()), dict(directory=Text()), check_output=False))
    add(E("lm.train_lm", lambda **k: lm.train_lm(**k)[1],
          lambda: dict(config=_tiny_lm_train(), progress=False), dict(config=Obj())))
    add(E("lm.train_or_load", lambda **k: lm.train_or_load(**k)[1],
          lambda: dict(config=_tiny_lm_train(), directory=_tmpdir(), progress=False),
          dict(config=Obj(), directory=Text())))

    # ---------------------------------------------------------------- nbce
    logits_rows = lambda: _x(3, 7)  # noqa: E731
    add(E("nbce.nbce_step", lambda **k: nbce.nbce_step(**k)[1:],
          lambda: dict(logits=logits_rows(), beta=0.25, eta=0.1, top_p=0.9, prev_choice=1,
                       pooling="entropy_gap", gap=0.5),
          dict(logits=F(), beta=Real(-1, None), eta=Real(), top_p=Real(0, 1, low_open=True),
               prev_choice=Int(0, 2, none_ok=True), pooling=Choice(), gap=Real(0, None))))
    add(E("nbce.top_p_truncate", nbce.top_p_truncate,
          lambda: dict(logprobs_RxV=np.asarray(jax.nn.log_softmax(logits_rows())), top_p=0.9),
          dict(logprobs_RxV=F(), top_p=Real(0, 1, low_open=True)), check_output=False))
    add(E("nbce.truncated_entropy", nbce.truncated_entropy,
          lambda: dict(logprobs_RxV=np.asarray(jax.nn.log_softmax(logits_rows()))),
          dict(logprobs_RxV=F(nonfinite=False))))
    add(E("nbce.split_into_chunks", nbce.split_into_chunks,
          lambda: dict(sequence=list(range(10)), chunk_length=4, overlap=1),
          dict(sequence=Obj(), chunk_length=Int(1), overlap=Int(0, 3))))
    add(E("nbce.nbce_prompts", nbce.nbce_prompts,
          lambda: dict(contexts=[[5, 6], [7]], question=[8], pad_id=0, max_length=16),
          dict(contexts=Seqs(0), question=Seqs(0, nested=False), pad_id=Int(0),
               max_length=Int(1, none_ok=True))))
    add(E("nbce.nbce_prefill", lambda **k: nbce.nbce_prefill(*_lm(), **k)[0],
          lambda: dict(prompts_BxP=_prompts(), max_new_tokens=2),
          dict(prompts_BxP=I(0, 258), max_new_tokens=Int(1))))
    add(E("nbce.nbce_decode", lambda **k: nbce.nbce_decode(*_lm(), **k).tokens,
          lambda: dict(logits_RxV=np.asarray(_prefilled()[0]), cache=_prefilled()[1],
                       key=_key(), max_new_tokens=2, beta=0.25, eta=0.1, top_p=0.9,
                       temperature=1.0, greedy=False),  # sampling: the key is required
          dict(logits_RxV=F(), cache=Obj(), key=Key(), max_new_tokens=Int(1),
               beta=Real(-1, None), eta=Real(), top_p=Real(0, 1, low_open=True),
               temperature=Real(0, None, low_open=True))))
    add(E("nbce.nbce_generate", lambda **k: nbce.nbce_generate(*_lm(), **k).tokens,
          lambda: dict(contexts=[[5, 6], [7, 8]], question=[9], max_new_tokens=2, beta=0.25,
                       eta=0.1, top_p=0.9, pooling="average", temperature=0.5, key=_key()),
          dict(contexts=Seqs(0, 258), question=Seqs(0, 258, nested=False),
               max_new_tokens=Int(1), beta=Real(-1, None), eta=Real(),
               top_p=Real(0, 1, low_open=True), pooling=Choice(), temperature=Real(0, None),
               key=Key())))

    # ---------------------------------------------------------------- nn
    add(E("nn.MLP", _module_call(nn.MLP),
          lambda: dict(in_dim=2, out_dim=2, hidden=8, depth=2, time_dim=4),
          dict(in_dim=Int(1), out_dim=Int(1), hidden=Int(1), depth=Int(1), time_dim=Int(1)),
          check_output=False))
    add(E("nn.MLP.__call__", lambda **k: _mlp()(**k),
          lambda: dict(x_BxD=_x(3, 2), t_B=np.linspace(0.1, 0.9, 3).astype(np.float32)),
          dict(x_BxD=F(mismatch=True), t_B=F(ints=True, rank=False))))
    add(E("nn.UNet", _module_call(nn.UNet), lambda: dict(channels=1, base=8, time_dim=8),
          dict(channels=Int(1), base=Int(1), time_dim=Int(1)), check_output=False))
    add(E("nn.UNet.__call__", lambda **k: _unet()(**k),
          lambda: dict(x_BxHxWxC=_images(), t_B=np.array([0.2, 0.7], np.float32)),
          dict(x_BxHxWxC=F(), t_B=F(ints=True, rank=False))))
    add(E("nn.MultiHeadAttention", _module_call(nn.MultiHeadAttention),
          lambda: dict(dim=8, num_heads=2), dict(dim=Int(1), num_heads=Int(1)),
          check_output=False))
    add(E("nn.TransformerBlock", _module_call(nn.TransformerBlock),
          lambda: dict(dim=8, num_heads=2, mlp_dim=16),
          dict(dim=Int(1), num_heads=Int(1), mlp_dim=Int(1)), check_output=False))
    add(E("nn.Transformer", _module_call(nn.Transformer),
          lambda: dict(vocab_size=20, dim=8, depth=1, num_heads=2, mlp_dim=16),
          dict(vocab_size=Int(1), dim=Int(1), depth=Int(1), num_heads=Int(1), mlp_dim=Int(1)),
          check_output=False))
    add(E("nn.Transformer.__call__", lambda **k: _transformer()(**k),
          lambda: dict(tokens_BxL=_tokens(2, 5, 20)), dict(tokens_BxL=I(0, 19))))
    add(E("nn.KVCache.init", lambda **k: nn.KVCache.init(**k).keys,
          lambda: dict(batch_size=2, max_length=4, num_heads=2, head_dim=4),
          dict(batch_size=Int(1), max_length=Int(1), num_heads=Int(1), head_dim=Int(1))))
    add(E("nn.MultiHeadAttention.__call__", lambda **k: _attention()(**k)[0],
          lambda: dict(x_BxLxD=_logits(2, 3, 8)), dict(x_BxLxD=F(mismatch=True))))
    add(E("nn.causal_mask", nn.causal_mask, lambda: dict(length=4, key_length=6, offset=2),
          dict(length=Int(1), key_length=Int(1, none_ok=True), offset=Int(0))))
    add(E("nn.padding_mask", nn.padding_mask, lambda: dict(valid_BxL=_tokens(2, 4, 2) > 0),
          dict(valid_BxL=Obj())))
    add(E("nn.rotary_embedding", nn.rotary_embedding,
          lambda: dict(x_BxLxHxK=np.asarray(_logits(2, 3, 8).reshape(2, 3, 2, 4)),
                       positions_BxL=_tokens(2, 3, 5), base=10000.0),
          dict(x_BxLxHxK=F(), positions_BxL=I(0, None), base=Real(1, None, low_open=True))))
    add(E("nn.sinusoidal_embedding", nn.sinusoidal_embedding,
          lambda: dict(t_B=np.array([0.1, 0.5], np.float32), dim=8, max_period=10000.0),
          dict(t_B=F(ints=True, rank=False), dim=Int(2), max_period=Real(1, None, low_open=True))))
    add(E("nn.pure", lambda module: nn.pure(module)[0](nn.pure(module)[1], _x(3, 2),
                                                       np.ones(3, np.float32)),
          lambda: dict(module=nn.MLP(2, 2, hidden=4, depth=1, time_dim=4, rngs=nnx.Rngs(0))),
          dict(module=Obj())))

    # ---------------------------------------------------------------- scorematching
    sm_xt, sm_x0 = lambda: _x(5, 2), lambda: _x(5, 2, 1)  # noqa: E731
    pos = Real(0, None, low_open=True)
    add(E("scorematching.explicit_score_matching_loss",
          scorematching.explicit_score_matching_loss,
          lambda: dict(score=_x(5, 2), true_score=_x(5, 2, 1)),
          dict(score=F(mismatch=True), true_score=F(mismatch=True))))
    add(E("scorematching.conditional_score_matching_loss",
          scorematching.conditional_score_matching_loss,
          lambda: dict(score=_x(5, 2, 2), x_t=sm_xt(), x_0=sm_x0(), alpha=0.8, sigma=0.6),
          dict(score=F(mismatch=True), x_t=F(mismatch=True), x_0=F(mismatch=True),
               alpha=Real(0, None), sigma=pos)))
    add(E("scorematching.conditional_score", scorematching.conditional_score,
          lambda: dict(x_t=sm_xt(), x_0=sm_x0(), alpha=0.8, sigma=0.6),
          dict(x_t=F(mismatch=True), x_0=F(mismatch=True), alpha=Real(0, None),
               sigma=pos)))
    add(E("scorematching.implicit_score_matching_loss",
          scorematching.implicit_score_matching_loss,
          lambda: dict(score_fn=_score_fn, x=_x(4, 2), method="hutchinson", key=_key(),
                       num_probes=2),
          dict(score_fn=Fn(), x=F(), method=Choice(), key=Key(), num_probes=Int(1))))
    add(E("scorematching.sliced_score_matching_loss", scorematching.sliced_score_matching_loss,
          lambda: dict(score_fn=_score_fn, x=_x(4, 2), key=_key(), num_projections=2),
          dict(score_fn=Fn(), x=F(), key=Key(), num_projections=Int(1))))
    add(E("scorematching.gaussian_score_matching_gap",
          scorematching.gaussian_score_matching_gap,
          lambda: dict(dim=2, alpha=0.8, sigma=0.6, data_std=1.0),
          dict(dim=Int(1), alpha=Real(0, None), sigma=pos, data_std=Real(0, None))))
    add(E("scorematching.GaussianMixture", lambda **k: scorematching.GaussianMixture(**k).score(
              _x(3, 2)),
          lambda: dict(means=_x(2, 2), stds=np.array([0.5, 1.0], np.float32),
                       weights=np.array([0.3, 0.7], np.float32)),
          dict(means=F(), stds=F(), weights=F())))
    add(E("scorematching.GaussianMixture.ring",
          lambda **k: scorematching.GaussianMixture.ring(**k).means,
          lambda: dict(num_components=3, radius=2.0, std=0.3),
          dict(num_components=Int(1), radius=pos, std=pos)))
    add(E("scorematching.GaussianMixture.score", lambda x: _mixture().score(x),
          lambda: dict(x=_x(3, 2)), dict(x=F(mismatch=True))))
    add(E("scorematching.GaussianMixture.sample", lambda **k: _mixture().sample(**k),
          lambda: dict(num=4, key=_key()), dict(num=Int(1), key=Key())))
    add(E("scorematching.GaussianMixture.perturb",
          lambda **k: _mixture().perturb(**k).stds,
          lambda: dict(alpha=0.8, sigma=0.6),
          dict(alpha=Real(0, None), sigma=Real(0, None))))
    add(E("scorematching.batch_ratio_score", scorematching.batch_ratio_score,
          lambda: dict(x_t=sm_xt(), x_0=_x(4, 2, 1), alpha=0.8, sigma=0.6),
          dict(x_t=F(mismatch=True), x_0=F(mismatch=True), alpha=Real(0, None),
               sigma=pos)))
    add(E("scorematching.batch_ratio_score_bias",
          lambda **k: scorematching.batch_ratio_score_bias(_mixture(), **k)[0],
          lambda: dict(x_t=_x(3, 2), alpha=0.8, sigma=0.6, batch_size=4, num_batches=3,
                       key=_key()),
          dict(x_t=F(mismatch=True), alpha=Real(0, None), sigma=pos,
               batch_size=Int(1), num_batches=Int(2), key=Key())))
    add(E("scorematching.compare_losses", lambda **k: scorematching.compare_losses(**k).sm,
          lambda: dict(score=_x(5, 2, 2), x_t=sm_xt(), x_0=sm_x0(), alpha=0.8, sigma=0.6,
                       true_score=_x(5, 2, 3)),
          dict(score=F(mismatch=True), x_t=F(mismatch=True), x_0=F(mismatch=True),
               alpha=Real(0, None), sigma=pos, true_score=F(mismatch=True))))
    add(E("scorematching.loss_gradients",
          lambda **k: scorematching.loss_gradients(*_apply_params(), **k),
          lambda: dict(x_t=sm_xt(), x_0=sm_x0(), alpha=0.8, sigma=0.6, true_score=_x(5, 2, 3)),
          dict(x_t=F(mismatch=True), x_0=F(mismatch=True), alpha=Real(0, None),
               sigma=pos, true_score=F(mismatch=True))))

    # ---------------------------------------------------------------- sector
    add(E("sector.probability", sector.probability,
          lambda: dict(n=4, theta=np.pi, method="series"),
          dict(n=Int(1, 2**53), theta=Real(0, 2 * np.pi, low_open=True), method=Choice())))
    add(E("sector.probability_turns", sector.probability_turns,
          lambda: dict(n=4, q=0.5, method="series"),
          dict(n=Int(1, 2**53), q=Real(0, 1, low_open=True, text_ok=True), method=Choice())))
    add(E("sector.probability_exact", lambda **k: float(sector.probability_exact(**k)),
          lambda: dict(n=4, q=Fraction(1, 2)),
          dict(n=Int(1, None), q=Real(0, 1, low_open=True, text_ok=True))))
    add(E("sector.probability_mc", lambda **k: sector.probability_mc(**k)[0],
          lambda: dict(n=4, theta=np.pi, key=_key(), num_samples=64, method="gap"),
          dict(n=Int(1, 2**53), theta=Real(0, 2 * np.pi, low_open=True), key=Key(),
               num_samples=Int(1, 2**31 - 1), method=Choice())))
    add(E("sector.sample_disk", sector.sample_disk, lambda: dict(key=_key(), shape=(3, 4)),
          dict(key=Key(), shape=Obj())))
    add(E("sector.smallest_sector_angle", sector.smallest_sector_angle,
          lambda: dict(points_BxNx2=_logits(2, 4, 2), method="sector"),
          dict(points_BxNx2=F(mismatch=True), method=Choice())))
    add(E("sector.parse_angle", lambda text: sector.parse_angle(text)[0],
          lambda: dict(text="3pi/2"), dict(text=Text()), names={"text": ("text", "THETA")}))

    # ---------------------------------------------------------------- udm
    class OptionalShape(Obj):
        """An event shape for which None is valid (any event shape)."""

        def bad(self, v):
            return [("number", 3)]

    add(E("udm.schedule", lambda **k: udm.schedule(**k).alpha_bar,
          lambda: dict(T=10, kind="cosine"), dict(T=Int(1), kind=Choice())))
    add(E("udm.reverse_times", udm.reverse_times, lambda: dict(T=10, steps=5),
          dict(T=Int(1), steps=Int(1, 10))))
    add(E("udm.kernel", udm.kernel, lambda: dict(name="baseline"), dict(name=Choice()),
          check_output=False))
    add(E("udm.HotDiffusion", udm.HotDiffusion,
          lambda: dict(T=10, eta=0.5, schedule="linear", event_shape=(3,)),
          # event_shape=None is valid: the batch shape is then t's shape
          dict(T=Int(1), eta=Real(0, 1), schedule=Choice(), event_shape=OptionalShape()),
          check_output=False))
    add(E("udm.ColdDiffusion", udm.ColdDiffusion,
          lambda: dict(degradation="blur", sigma=0.1, kernel="deterministic", T=5,
                       event_shape=(8, 8, 1)),
          dict(degradation=Choice(), sigma=Real(0, None), kernel=Choice(), T=Int(1),
               event_shape=Obj()), check_output=False))
    add(E("udm.EditDiffusion", udm.EditDiffusion,
          lambda: dict(length=6, vocab=5, kernel="deterministic", prior_law="uniform"),
          dict(length=Int(1), vocab=Int(2), kernel=Choice(), prior_law=Choice()), check_output=False))
    add(E("udm.MaskDiffusion", udm.MaskDiffusion,
          lambda: dict(length=6, vocab=5, kernel="deterministic"),
          dict(length=Int(1), vocab=Int(1), kernel=Choice()), check_output=False))
    add(E("udm.CustomDiffusion", udm.CustomDiffusion,
          lambda: dict(F=lambda x0, t, eps: x0 + t * eps, T=10, kernel="baseline"),
          dict(F=Fn(), T=Int(1), kernel=Choice()), check_output=False))
    add(E("udm.EncoderDiffusion", udm.EncoderDiffusion,
          lambda: dict(event_shape=(3,), T=10), dict(T=Int(1)), check_output=False))
    for label, process, x0, pred in (
        ("HotDiffusion", _hot, lambda: _x(4, 3), lambda: _x(4, 3, 1)),
        ("ColdDiffusion", _cold, _images, lambda: _images(2, 1)),
    ):
        add(E(f"udm.{label}.forward", lambda p=process, **k: p().forward(**k)[0],
              lambda x0=x0: dict(x0=x0(), t=np.array([3, 5][: x0().shape[0]] * 2)[: x0().shape[0]],
                                 key=_key()),
              # a scalar t (one time for the whole batch) is valid, so dropping its axis is too
              dict(x0=F(mismatch=True), t=I(0, process().T, rank=False), key=Key())))
        add(E(f"udm.{label}.reverse_step", lambda p=process, **k: p().reverse_step(**k),
              lambda x0=x0, pred=pred: dict(x_t=x0(), x0_hat=pred(), t=3, key=_key()),
              dict(x_t=F(mismatch=True), x0_hat=F(mismatch=True), t=Int(1, process().T),
                   key=Key())))
        add(E(f"udm.{label}.loss", lambda p=process, **k: p().loss(**k),
              lambda x0=x0, pred=pred: dict(x0=x0(), prediction=pred(),
                                            t=np.full(x0().shape[0], 3, np.int32)),
              # a scalar t is valid (see forward)
              dict(x0=F(mismatch=True), prediction=F(mismatch=True),
                   t=I(1, process().T, rank=False))))
    for label, process in (("MaskDiffusion", _mask), ("EditDiffusion", _edit)):
        add(E(f"udm.{label}.forward", lambda p=process, **k: p().forward(**k)[0],
              lambda: dict(x0=_tokens(2, 6, 5), t=np.array([2, 4]), key=_key()),
              # a scalar t is valid (see above)
              dict(x0=I(0, 4), t=I(0, process().T, rank=False), key=Key())))
        add(E(f"udm.{label}.loss", lambda p=process, **k: p().loss(**k),
              lambda: dict(x0=_tokens(2, 6, 5), prediction=_logits(2, 6, 5),
                           t=np.array([2, 4])),
              dict(x0=I(0, 4), prediction=F(mismatch=True), t=I(1, process().T, rank=False))))
    add(E("udm.sample", lambda **k: udm.sample(_hot(), lambda x, t: 0.5 * x, **k),
          lambda: dict(x_T=_x(4, 3), key=_key(), steps=5),
          # Empty in, empty out: an empty batch x_T gives empty samples. steps=None means T.
          dict(x_T=F(mismatch=True, empty_batch=True), key=Key(),
               steps=Int(1, 10, none_ok=True))))
    for kname, fn, extra in (("baseline_kernel", udm.baseline_kernel, {}),
                             ("deterministic_kernel", udm.deterministic_kernel, {}),
                             ("gaussian_interpolation_kernel", udm.gaussian_interpolation_kernel,
                              {"sigma_tilde": 0.5})):
        args = dict(x_t=F(mismatch=True), x0_hat=F(mismatch=True), t=I(1, 10), s=I(0, 9),
                    key=Key())
        if extra:
            args["sigma_tilde"] = Real(0, 1)
        add(E(f"udm.{kname}", lambda fn=fn, **k: fn(_hot(), **k),
              lambda extra=extra: dict(x_t=_x(4, 3), x0_hat=_x(4, 3, 1),
                                       t=np.full(4, 5), s=np.full(4, 3), key=_key(), **extra),
              args))

    # ---------------------------------------------------------------- weakform
    add(E("weakform.default_test_functions",
          lambda **k: weakform.default_test_functions(**k).centers,
          lambda: dict(dim=2, key=_key(), num=3, scale=1.0),
          dict(dim=Int(1), key=Key(), num=Int(1), scale=Real(0, None, low_open=True))))
    add(E("weakform.TestFunctions.__call__", lambda x_D: _phi()(x_D),
          lambda: dict(x_D=np.array([0.1, 0.2], np.float32)), dict(x_D=F(mismatch=True))))
    add(E("weakform.exact_laplacian", lambda x_D: weakform.exact_laplacian(_phi(), x_D),
          lambda: dict(x_D=np.array([0.1, 0.2], np.float32)), dict(x_D=F())))
    add(E("weakform.hutchinson_laplacian",
          lambda **k: weakform.hutchinson_laplacian(_phi(), **k),
          lambda: dict(x_D=np.array([0.1, 0.2], np.float32), key=_key(), num_probes=2),
          dict(x_D=F(), key=Key(), num_probes=Int(1))))
    add(E("weakform.generator",
          lambda **k: weakform.generator(_phi(), lambda x, t: -x, lambda t: 0.8, **k),
          lambda: dict(x_D=np.array([0.1, 0.2], np.float32), t=np.float32(0.5), key=_key(),
                       hutchinson=False),
          dict(x_D=F(), t=Real(), key=Key())))
    add(E("weakform.fokker_planck_residual",
          lambda **k: weakform.fokker_planck_residual(lambda x, t: -x, 1.0, _ou_log_density,
                                                      **k),
          lambda: dict(x_D=np.array([0.1, 0.2], np.float32), t=np.float32(0.5)),
          dict(x_D=F(), t=Real())))
    add(E("weakform.continuity_residual",
          lambda **k: weakform.continuity_residual(lambda x, t: -x, _ou_log_density, **k),
          lambda: dict(x_D=np.array([0.1, 0.2], np.float32), t=np.float32(0.5)),
          dict(x_D=F(), t=Real())))
    add(E("weakform.strong_form_residuals",
          lambda **k: weakform.strong_form_residuals(lambda x, t: -x, 1.0, _ou_log_density,
                                                     **k),
          lambda: dict(points=_x(3, 2), times=np.array([0.2, 0.5], np.float32)),
          # Empty in, empty out: no points or no times give an empty (T, N) result. Integer
          # times are valid time points.
          dict(points=F(empty=False), times=F(empty=False, ints=True))))
    add(E("weakform.DiffusionMatrix", lambda matrix: weakform.DiffusionMatrix(matrix),
          lambda: dict(matrix=lambda x, t: jnp.eye(2)), dict(matrix=Fn()), check_output=False))
    add(E("weakform.verify_fokker_planck",
          lambda **k: weakform.verify_fokker_planck(lambda x, t: -x, 1.0, **k).max_abs_z,
          lambda: dict(sampler=_ou_sampler, times=np.array([0.2, 0.5]), key=_key(),
                       num_samples=400, alpha=0.01),
          # Integer times are valid (strictly increasing) time points.
          dict(sampler=Fn(), times=F(ints=True), key=Key(), num_samples=Int(2),
               alpha=Real(0, 1, low_open=True, high_open=True))))
    add(E("weakform.verify_continuity",
          lambda **k: weakform.verify_continuity(lambda x, t: -x, **k).max_abs_z,
          lambda: dict(sampler=_ou_sampler, times=np.array([0.2, 0.5]), key=_key(),
                       num_samples=400),
          # Integer times are valid (strictly increasing) time points.
          dict(sampler=Fn(), times=F(ints=True), key=Key(), num_samples=Int(2))))

    # ---------------------------------------------------------------- odes (not ours to fix)
    if odes is not None and train is not None:
        from diffusionlab.odes import (
            flows,
            gravity,
            isotropic,
            learned,
            memorisation,
            powerlaw,
            unaugmented,
            vp,
        )
        xs, ts = lambda: _x(4, 2), lambda: np.array([0.5, 1.0, 1.5, 2.0], np.float32)  # noqa: E731
        dat = lambda: _x(5, 2, 1)  # noqa: E731
        path = isotropic.GaussianCDF()
        add(E("odes.bits_per_dim", odes.bits_per_dim,
              lambda: dict(log_prob=np.array([-3.0, -2.0], np.float32), dim=2, bin_width=1 / 256),
              dict(log_prob=F(rank=False, empty_batch=True), dim=Int(1),
                   bin_width=Real(0, None, low_open=True))))
        add(E("odes.generate", lambda **k: odes.generate(lambda x, t: -x, **k).samples,
              lambda: dict(x_T=_x(3, 2), T=1.0, solver="euler", steps=4),
              dict(x_T=F(rank=False, empty_batch=True), T=Real(0, None, low_open=True), solver=Choice(),
                   steps=Int(1))))
        add(E("odes.log_likelihood",
              lambda **k: odes.log_likelihood(lambda x, t: -x, **k,
                                              log_prior=flows.standard_normal_log_density).log_prob,
              lambda: dict(x=_x(3, 2), T=1.0, solver="euler", steps=4),
              dict(x=F(rank=False, empty_batch=True), T=Real(0, None, low_open=True), solver=Choice(),
                   steps=Int(1))))
        add(E("odes.VPSchedule", odes.VPSchedule, lambda: dict(beta_min=0.1, beta_max=20.0),
              dict(beta_min=Real(0, None), beta_max=Real(0, None, low_open=True)),
              check_output=False))
        add(E("odes.flows.interpolate", flows.interpolate,
              lambda: dict(x0=xs(), x1=_x(4, 2, 1), t=ts() / 2),
              dict(x0=F(mismatch=True), x1=F(mismatch=True), t=F(scalar=True))))
        add(E("odes.flows.standard_normal_log_density", flows.standard_normal_log_density,
              lambda: dict(x=xs()), dict(x=F(rank=False, empty_batch=True))))
        add(E("odes.flows.uniform_log_density", lambda **k: flows.uniform_log_density(**k)(xs()),
              lambda: dict(low=-10.0, high=10.0), dict(low=Real(), high=Real())))
        add(E("odes.flows.conditional_log_density",
              lambda **k: flows.conditional_log_density(
                  **k, log_prior=flows.standard_normal_log_density),
              lambda: dict(x_t=xs(), t=ts() / 4, x0=dat()[:4]),
              dict(x_t=F(mismatch=True), t=F(scalar=True), x0=F(mismatch=True))))
        add(E("odes.flows.marginal_velocity",
              lambda **k: flows.marginal_velocity(**k, log_prior=flows.standard_normal_log_density),
              lambda: dict(x=xs(), t=0.5, data=dat()),
              dict(x=F(mismatch=True, empty_batch=True), t=Real(0, 1, low_open=True),
                   data=F(mismatch=True))))
        add(E("odes.flows.atoms_velocity", lambda **k: flows.atoms_velocity(**k)(xs()[:, :1], 0.5),
              lambda: dict(low=0.0, high=2.0), dict(low=Real(), high=Real())))
        add(E("odes.flows.cfm_loss", lambda **k: flows.cfm_loss(lambda x, t: -x, **k),
              lambda: dict(x0=xs(), key=_key()), dict(x0=F(rank=False, empty_batch=True), key=Key())))
        add(E("odes.flows.rectified_loss", lambda **k: flows.rectified_loss(lambda x, t: -x, **k),
              lambda: dict(x0=xs(), x1=_x(4, 2, 1), key=_key(), t_min=0.0),
              dict(x0=F(mismatch=True), x1=F(mismatch=True), key=Key(), t_min=Real(0, 1))))
        add(E("odes.flows.reflow_pairs", lambda **k: flows.reflow_pairs(lambda x, t: -x, **k)[0],
              lambda: dict(noise=xs(), solver="euler", steps=4),
              dict(noise=F(rank=False, empty_batch=True), solver=Choice(), steps=Int(1))))
        if hasattr(flows, "path_rectified_loss"):
            curved = flows.trigonometric_path()
            add(E("odes.flows.path_rectified_loss",
                  lambda **k: flows.path_rectified_loss(lambda x, t: -x, **k, path=curved),
                  lambda: dict(x0=xs(), x1=_x(4, 2, 1), key=_key(), t_min=0.0, t_max=1.0),
                  dict(x0=F(mismatch=True), x1=F(mismatch=True), key=Key(), t_min=Real(0, 1),
                       t_max=Real(0, 1))))
            add(E("odes.flows.path_cfm_loss",
                  lambda **k: flows.path_cfm_loss(lambda x, t: -x, **k, path=curved),
                  lambda: dict(x0=xs(), key=_key()),
                  dict(x0=F(rank=False, empty_batch=True), key=Key())))
            add(E("odes.flows.path_interpolate",
                  lambda **k: flows.path_interpolate(**k, path=curved)[1],
                  lambda: dict(x0=xs(), x1=_x(4, 2, 1), t=ts() / 2),
                  dict(x0=F(mismatch=True), x1=F(mismatch=True), t=F(scalar=True))))
            add(E("odes.flows.straightness",
                  lambda **k: flows.straightness(lambda x, t: -x, **k, path=curved).straightness,
                  lambda: dict(noise=xs(), steps=4),
                  dict(noise=F(rank=False, empty_batch=True), steps=Int(1, 1 << 16))))
        from diffusionlab.odes import exact_fields
        for name in ("vp_score", "vp_velocity"):
            add(E(f"odes.exact_fields.{name}", getattr(exact_fields, name),
                  lambda: dict(x=xs(), t=ts() / 2, data=dat(), block=4),
                  dict(x=F(mismatch=True), t=F(scalar=True), data=F(mismatch=True),
                       block=Int(1))))
        add(E("odes.exact_fields.exact_velocity",
              lambda **k: exact_fields.exact_velocity(**k)(xs(), 0.5),
              lambda: dict(method="cfm", data=dat(), block=4),
              dict(method=Choice(), data=F(rank=False), block=Int(1)), check_output=False))
        add(E("odes.gravity.field", lambda **k: gravity.field(**k)[0],
              lambda: dict(x=xs(), t=ts(), data=dat(), block=4),
              dict(x=F(mismatch=True), t=F(scalar=True), data=F(mismatch=True), block=Int(1))))
        add(E("odes.gravity.velocity", gravity.velocity,
              lambda: dict(x=xs(), t=ts(), data=dat(), block=4),
              dict(x=F(mismatch=True), t=F(scalar=True), data=F(mismatch=True), block=Int(1))))
        add(E("odes.gravity.potential", gravity.potential,
              lambda: dict(x=xs(), t=ts(), data=dat()),
              dict(x=F(mismatch=True), t=F(scalar=True), data=F(mismatch=True))))
        add(E("odes.gravity.conditional_log_density", gravity.conditional_log_density,
              lambda: dict(x_t=xs(), t=ts(), x0=dat()[:4]),
              dict(x_t=F(mismatch=True), t=F(scalar=True), x0=F(mismatch=True))))
        add(E("odes.gravity.conditional_loss", gravity.conditional_loss,
              lambda: dict(prediction=_x(4, 2, 2), x_t=xs(), t=ts(), x0=dat()[:4]),
              dict(prediction=F(mismatch=True), x_t=F(mismatch=True), t=F(scalar=True),
                   x0=F(mismatch=True))))
        add(E("odes.gravity.conditional_sample", gravity.conditional_sample,
              lambda: dict(x0=xs(), t=ts(), key=_key()), dict(x0=F(), t=F(scalar=True), key=Key())))
        add(E("odes.gravity.conditional_target", lambda **k: gravity.conditional_target(**k)[0],
              lambda: dict(x0=xs(), t=ts(), key=_key()), dict(x0=F(), t=F(scalar=True), key=Key())))
        add(E("odes.gravity.log_normaliser", gravity.log_normaliser, lambda: dict(dim=2),
              dict(dim=Int(1))))
        add(E("odes.gravity.log_sphere_area", gravity.log_sphere_area, lambda: dict(n=2),
              dict(n=Int(1))))
        add(E("odes.gravity.pfgm_perturb", lambda **k: gravity.pfgm_perturb(**k)[0],
              lambda: dict(x0=xs(), key=_key(), sigma=0.01, tau=0.03),
              dict(x0=F(empty_batch=True), key=Key(), sigma=Real(0, None, low_open=True),
                   tau=Real(0, None, low_open=True))))
        add(E("odes.gravity.pfgm_target", gravity.pfgm_target,
              lambda: dict(x=_x(4, 3), t=ts(), batch=_x(5, 3, 1), gamma=1e-3),
              dict(x=F(mismatch=True), t=F(scalar=True), batch=F(mismatch=True), gamma=Real(0, None))))
        add(E("odes.gravity.pfgm_loss", gravity.pfgm_loss,
              lambda: dict(prediction=_x(4, 4, 2), x=_x(4, 3), t=ts(), batch=_x(5, 3, 1),
                           gamma=1e-3),
              dict(prediction=F(mismatch=True), x=F(mismatch=True), t=F(scalar=True), batch=F(mismatch=True),
                   gamma=Real(0, None))))
        add(E("odes.gravity.prior_log_density", gravity.prior_log_density,
              lambda: dict(x=_x(4, 3), T=2.0),
              dict(x=F(empty_batch=True), T=Real(0, None, low_open=True))))
        add(E("odes.gravity.prior_radial_density", gravity.prior_radial_density,
              lambda: dict(r=np.array([0.5, 1.0], np.float32), dim=2, T=2.0),
              dict(r=F(rank=False, empty_batch=True), dim=Int(1), T=Real(0, None, low_open=True))))
        add(E("odes.gravity.sample_prior", gravity.sample_prior,
              lambda: dict(num=4, dim=2, T=2.0, key=_key(), method="beta"),
              dict(num=Int(1), dim=Int(1), T=Real(0, None, low_open=True), key=Key(),
                   method=Choice())))
        add(E("odes.isotropic.green_function",
              lambda **k: isotropic.green_function(path, **k),
              lambda: dict(x_t=xs()[0], t=0.5, x0=dat()[0]),
              dict(x_t=F(mismatch=True), t=Real(0, None, low_open=True), x0=F(mismatch=True))))
        for fname in ("conditional_log_density", "conditional_velocity"):
            add(E(f"odes.isotropic.{fname}",
                  functools.partial(_isotropic_call, getattr(isotropic, fname), path),
                  lambda: dict(x_t=xs(), t=ts(), x0=dat()[:4]),
                  dict(x_t=F(mismatch=True), t=F(scalar=True), x0=F(mismatch=True))))
        add(E("odes.isotropic.conditional_sample",
              lambda **k: isotropic.conditional_sample(path, **k),
              lambda: dict(x0=xs(), t=ts(), key=_key()), dict(x0=F(), t=F(scalar=True), key=Key())))
        add(E("odes.isotropic.marginal_velocity",
              lambda **k: isotropic.marginal_velocity(path, **k),
              lambda: dict(x=xs(), t=ts(), data=dat()),
              dict(x=F(mismatch=True), t=F(scalar=True), data=F(mismatch=True))))
        add(E("odes.isotropic.sample_prior", lambda **k: isotropic.sample_prior(path, **k),
              lambda: dict(num=4, dim=2, T=2.0, key=_key()),
              dict(num=Int(1), dim=Int(1), T=Real(0, None, low_open=True), key=Key())))
        add(E("odes.powerlaw.field", lambda **k: powerlaw.field(**k)[0],
              lambda: dict(x=xs(), t=ts(), data=dat(), k=3.0, block=4),
              dict(x=F(mismatch=True), t=F(scalar=True), data=F(mismatch=True),
                   k=Real(0, None, low_open=True),
                   block=Int(1))))
        add(E("odes.powerlaw.velocity", powerlaw.velocity,
              lambda: dict(x=xs(), t=ts(), data=dat(), k=3.0, block=4),
              dict(x=F(mismatch=True), t=F(scalar=True), data=F(mismatch=True),
                   k=Real(0, None, low_open=True),
                   block=Int(1))))
        add(E("odes.powerlaw.point_field", powerlaw.point_field,
              lambda: dict(x=xs()[0], t=0.5, x0=dat()[0], k=3.0),
              dict(x=F(mismatch=True), t=Real(0, None, low_open=True), x0=F(mismatch=True),
                   k=Real(0, None, low_open=True))))
        add(E("odes.powerlaw.divergence", powerlaw.divergence,
              lambda: dict(x=xs()[0], t=0.5, x0=dat()[0], k=3.0),
              dict(x=F(mismatch=True), t=Real(0, None, low_open=True), x0=F(mismatch=True),
                   k=Real(0, None, low_open=True))))
        add(E("odes.unaugmented.sample_sphere", unaugmented.sample_sphere,
              lambda: dict(num=4, dim=2, radius=1.0, key=_key()),
              dict(num=Int(1), dim=Int(1), radius=Real(0, None, low_open=True), key=Key())))
        add(E("odes.unaugmented.follow_field_lines", unaugmented.follow_field_lines,
              lambda: dict(x_start=xs() + 3.0, data=dat(), length=1.0, steps=10),
              dict(x_start=F(mismatch=True, empty_batch=True), data=F(mismatch=True),
                   length=Real(0, None, low_open=True), steps=Int(1))))
        add(E("odes.vp.vp_loss", lambda **k: vp.vp_loss(lambda x, t: 0 * x, **k),
              lambda: dict(x0=xs(), key=_key(), t_min=1e-3),
              dict(x0=F(rank=False, empty_batch=True), key=Key(), t_min=Real(0, 1, low_open=True))))
        add(E("odes.vp.probability_flow",
              lambda **k: vp.probability_flow(lambda x, t: 0 * x, **k)(xs(), 0.5),
              lambda: dict(schedule=odes.VPSchedule()), dict(schedule=Obj())))
        add(E("odes.memorisation.hit_report",
              lambda **k: memorisation.hit_report(**k).distance,
              lambda: dict(samples=xs(), data=dat(), tolerance=0.1),
              dict(samples=F(mismatch=True, empty_batch=True), data=F(mismatch=True),
                   tolerance=Real(0, None, low_open=True))))
        add(E("odes.memorisation.memorisation_floor",
              lambda **k: memorisation.memorisation_floor(**k).scores,
              lambda: dict(data=dat(), reference=xs(), num=4, domain="toy", key=_key(),
                           resamples=2),
              dict(data=F(mismatch=True), reference=F(mismatch=True), num=Int(2),
                   domain=Choice(), key=Key(), resamples=Int(2))))
        add(E("odes.learned.Budget", learned.Budget,
              lambda: dict(hidden=8, depth=1, time_dim=4),
              dict(hidden=Int(1), depth=Int(1), time_dim=Int(1)), check_output=False))
        add(E("odes.learned.init_network", lambda **k: learned.init_network(**k)[1],
              lambda: dict(dim=2, budget=learned.Budget(hidden=8, depth=1, time_dim=4), key=_key()),
              dict(dim=Int(1), budget=Obj(), key=Key()), check_output=False))
        add(E("odes.learned.fit", lambda **k: learned.fit(**k).history,
              lambda: dict(method="cfm", data=dat(), budget=learned.Budget(hidden=8, depth=1,
                                                                            time_dim=4),
                           config=train.TrainConfig(steps=2, batch_size=4), key=_key()),
              dict(method=Choice(), data=F(), budget=Obj(), config=Obj(), key=Key()),
              check_output=False))

    # ---------------------------------------------------------------- solve, metrics
    if solve is not None:
        add(E("solve.solve_ode", lambda **k: solve.solve_ode(_velocity, **k).x,
              lambda: dict(x_T=_x(3, 2), T=1.0, t_end=0.0, solver="euler", steps=4),
              dict(x_T=F(rank=False, empty_batch=True), T=Real(), t_end=Real(), solver=Choice(),
                   steps=Int(1))))
        add(E("solve.solve_sde",
              lambda **k: solve.solve_sde(lambda t, x: -x, lambda t: 0.5 + 0 * t, **k).x,
              lambda: dict(x_T=_x(3, 2), T=1.0, t_end=0.0, key=_key(), steps=4),
              dict(x_T=F(rank=False, empty_batch=True), T=Real(), t_end=Real(), key=Key(), steps=Int(1))))
    if metrics is not None:
        # Integer samples are data like any other (converted to float); frechet_distance is
        # host-side NumPy and takes nested lists too.
        samples = F(mismatch=True, ints=True)
        add(E("metrics.energy_distance", metrics.energy_distance,
              lambda: dict(x=_x(6, 2), y=_x(5, 2, 1)), dict(x=samples, y=samples)))
        add(E("metrics.mmd", metrics.mmd, lambda: dict(x=_x(6, 2), y=_x(5, 2, 1)),
              dict(x=samples, y=samples)))
        add(E("metrics.sliced_wasserstein", metrics.sliced_wasserstein,
              lambda: dict(x=_x(6, 2), y=_x(5, 2, 1), key=_key(), num_projections=8),
              dict(x=samples, y=samples, key=Key(), num_projections=Int(1))))
        features = F(mismatch=True, ints=True, lists=True)
        add(E("metrics.frechet_distance", metrics.frechet_distance,
              lambda: dict(features_a=_x(8, 2), features_b=_x(8, 2, 1)),
              dict(features_a=features, features_b=features)))
        # Flat (N, 64) images, so that dropping an axis gives an invalid shape ((N, 8, 8) is
        # a valid layout).
        add(E("metrics.fd_digits", metrics.fd_digits,
              lambda: dict(images_a=_digit_images(0).reshape(-1, 64),
                           images_b=_digit_images(1).reshape(-1, 64)),
              dict(images_a=F(), images_b=F())))

    # ---------------------------------------------------------------- train
    if train is not None:
        class Devices(Obj):
            """A list of devices; None is valid (every device)."""

            def bad(self, v):
                return [("number", 3), ("empty", []), ("not devices", ["cpu"])]

        add(E("train.TrainConfig", train.TrainConfig,
              lambda: dict(steps=2, batch_size=4, learning_rate=1e-3, ema_decay=0.9, grad_clip=1.0),
              # grad_clip=0 is valid: it disables clipping.
              dict(steps=Int(1), batch_size=Int(1), learning_rate=Real(0, None, low_open=True),
                   ema_decay=Real(0, 1), grad_clip=Real(0, None)),
              check_output=False))
        add(E("train.make_optimizer", train.make_optimizer,
              lambda: dict(config=train.TrainConfig(steps=2, batch_size=4)), dict(config=Obj()),
              check_output=False))
        add(E("train.batch_indices", train.batch_indices,
              lambda: dict(step=np.int32(1), num_examples=10, batch_size=4, key=_key()),
              dict(num_examples=Int(1), batch_size=Int(1), key=Key())))
        add(E("train.init_state", lambda **k: train.init_state(**k).params,
              lambda: dict(params={"w": jnp.ones(2)},
                           optimizer=train.make_optimizer(train.TrainConfig(steps=2, batch_size=4))),
              dict(optimizer=Obj())))
        add(E("train.make_train_step", train.make_train_step,
              lambda: dict(loss_fn=lambda p, b, k: jnp.sum(p["w"] ** 2),
                           optimizer=train.make_optimizer(train.TrainConfig(steps=2, batch_size=4)),
                           num_examples=10, batch_size=4, ema_decay=0.9),
              dict(loss_fn=Fn(), optimizer=Obj(), num_examples=Int(1), batch_size=Int(1)),
              check_output=False))
        add(E("train.fit", lambda **k: train.fit(**k).params,
              lambda: dict(loss_fn=lambda p, b, k: jnp.sum((p["w"][None, :] - b) ** 2, axis=-1),
                           params={"w": jnp.ones(2)}, data=_x(10, 2),
                           config=train.TrainConfig(steps=2, batch_size=4), key=_key()),
              # Integer data (token ids) is valid.
              dict(loss_fn=Fn(), data=F(rank=False, ints=True), config=Obj(), key=Key())))
        add(E("train.Checkpointer", train.Checkpointer,
              lambda: dict(directory=_tmpdir(), max_to_keep=2),
              dict(directory=Text(), max_to_keep=Int(1)), check_output=False))
        add(E("train.data_mesh", train.data_mesh, lambda: dict(devices=None),
              dict(devices=Devices()), check_output=False))
        add(E("train.put_replicated", train.put_replicated,
              lambda: dict(tree={"w": np.ones(2, np.float32)}, mesh=train.data_mesh()),
              dict(mesh=Obj())))
        add(E("train.to_host", train.to_host, lambda: dict(tree={"w": jnp.ones(2)}), {}))

    # ------------------------------------------------ exact oracles, characteristics, AnglE,
    # human-rated data, combination rules
    add(E("cosent.cosent_loss(method)", cosent.cosent_loss,
          lambda: dict(scores=scores(), labels=labels(), method="auto"),
          dict(method=Choice())))
    add(E("cosent.angle_similarity", cosent.angle_similarity,
          lambda: dict(u_BxD=_x(4, 6), v_BxD=_x(4, 6, seed=1)),
          dict(u_BxD=F(mismatch=True), v_BxD=F(mismatch=True))))
    add(E("cosent.angle_loss", cosent.angle_loss,
          lambda: dict(u_BxD=_x(6, 4), v_BxD=_x(6, 4, seed=1), labels_B=labels(), scale=20.0),
          dict(u_BxD=F(mismatch=True), v_BxD=F(mismatch=True), labels_B=F(ints=True),
               scale=Real(0, None, low_open=True)),
          names=dict(labels_B=("labels_B", "labels"))))
    add(E("cosent.human_rated", lambda **k: cosent.human_rated(**k).scores,
          lambda: dict(name="wordsim353", split="test"), dict(name=Choice(), split=Choice())))
    add(E("udm.empirical_predictor", lambda **k: udm.empirical_predictor(**k)(
              np.zeros((2, 3), np.float32), np.array([3, 5])),
          lambda: dict(process=_hot(), data=_x(5, 3), block_size=2),
          dict(process=Obj(), data=F(mismatch=True), block_size=Int(1))))
    if odes is not None and hasattr(odes, "characteristics_velocity"):
        add(E("odes.characteristics_velocity", odes.characteristics_velocity,
              lambda: dict(phi=lambda x, t: x / t, x=_x(3, 2), t=0.5),
              # one point (d,) or a batch (..., d); an empty batch gives an empty output
              dict(phi=Fn(), x=F(rank=False, empty_batch=True),
                   t=Real(0, None, low_open=True))))
    add(E("nbce.combine_generate", lambda **k: nbce.combine_generate(*_lm(), **k),
          lambda: dict(contexts=[[5, 6], [7, 8]], question=[9], max_new_tokens=2,
                       rule="ensemble", weights=np.array([0.5, 0.5])),
          dict(contexts=Seqs(0, 258), question=Seqs(0, 258, nested=False),
               max_new_tokens=Int(1), rule=Choice())))
    return out


def _isotropic_call(fn, path, **kwargs):
    return fn(path, **kwargs)


def _try_import(name):
    import importlib
    return importlib.import_module(f"diffusionlab.{name}")


def _tmpdir():
    """A scratch folder, removed when the test process exits."""
    import atexit
    import shutil
    import tempfile
    directory = tempfile.mkdtemp(prefix="fuzz_")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@functools.cache
def _saved_lm():
    from diffusionlab import lm
    directory = _tmpdir()
    lm.save_lm(directory, _lm()[0].config, _lm()[1])
    return directory


def _tiny_lm_train():
    from diffusionlab import lm
    from diffusionlab.train import TrainConfig
    return lm.LMTrainConfig(model=lm.LMConfig(dim=16, depth=1, num_heads=2, mlp_dim=32,
                                              max_length=64),
                            num_examples=4,
                            train=TrainConfig(steps=2, batch_size=2, log_every=1))


@functools.cache
def _digit_images(seed):
    from diffusionlab import data
    images, _ = data.digits("test")
    return np.asarray(images[seed * 20:(seed + 1) * 20], np.float32)


@functools.cache
def _mlp():
    from flax import nnx

    from diffusionlab import nn
    return nn.MLP(2, 2, hidden=8, depth=2, time_dim=4, rngs=nnx.Rngs(0))


@functools.cache
def _unet():
    from flax import nnx

    from diffusionlab import nn
    return nn.UNet(1, base=8, time_dim=8, rngs=nnx.Rngs(0))


@functools.cache
def _transformer():
    from flax import nnx

    from diffusionlab import nn
    return nn.Transformer(20, 8, 1, 2, 16, rngs=nnx.Rngs(0))


@functools.cache
def _attention():
    from flax import nnx

    from diffusionlab import nn
    return nn.MultiHeadAttention(8, 2, rngs=nnx.Rngs(0))


@functools.cache
def entries() -> dict[str, Entry]:
    return {e.name: e for e in _entries()}


SKIPPED = {
    # Not functions of data, so not fuzzed.
    "plots": "plotting helpers (figures from already-checked results)",
    "NamedTuple results": "result containers (NBCEOutput, Generated, Likelihood, LossComparison, "
                          "FitResult, TrainState, TrainResult, ODESolution, ...)",
    "constants": "tuples of names (POOLINGS, KERNELS, DEGRADATIONS, ...) and FULL_TURN",
    "wordnet": "wordnet_task/wordnet_available need the optional nltk corpus",
    "initialize_distributed": "joins a multi-process job (a network side effect)",
    "odes.learned.sample/fit_reflow/gravity_denoiser/gravity_loss": "need a trained model; "
    "fit covers the same checks",
}

# --------------------------------------------------------------------------- running a call


class CallTimeout(BaseException):
    """Raised by the alarm when one call runs past its time limit (not an Exception, so that
    library code cannot swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raises :class:`CallTimeout` in the main thread after ``seconds`` (POSIX alarm)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):
        raise CallTimeout(f"call exceeded {seconds} s")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _numeric_leaves(out):
    leaves = []
    for leaf in jax.tree.leaves(out):
        if isinstance(leaf, (jax.Array, np.ndarray, np.generic, float, int, complex)) \
                and not isinstance(leaf, bool):
            if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
                continue
            leaves.append(np.asarray(leaf))
        elif isinstance(leaf, Fraction):
            leaves.append(np.asarray(float(leaf)))
    return leaves


def all_finite(out) -> bool:
    """Whether every numeric leaf of ``out`` is finite."""
    for leaf in _numeric_leaves(out):
        if leaf.dtype.kind in "fc" and not np.all(np.isfinite(leaf)):
            return False
    return True


def narrow_float(out) -> str | None:
    """The dtype of a floating output narrower than float32, if any."""
    for leaf in _numeric_leaves(out):
        if leaf.dtype.kind == "f" and leaf.dtype.itemsize < 4:
            return str(leaf.dtype)
        if leaf.dtype.kind == "V" or str(leaf.dtype) == "bfloat16":
            return str(leaf.dtype)
    return None


INTERNAL_ROOTS = ("/jax/", "/jaxlib/", "/numpy/", "/flax/", "/optax/", "/diffrax/",
                  "/equinox/", "/orbax/", "/lib/python3")


def _origin(error: BaseException) -> str:
    """``"ours"`` if the innermost frame of the traceback is in diffusionlab, else ``"internal"``."""
    tb = error.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    if last is None:
        return "ours"
    return "ours" if "/diffusionlab/" in last and "site-packages" not in last else "internal"


CATEGORIES = (
    "named",        # ValueError/TypeError from our code naming the argument
    "unnamed",      # ValueError/TypeError from our code not naming it
    "internal",     # an error surfacing from JAX, NumPy or Python internals
    "other_error",  # AttributeError, IndexError, KeyError, ZeroDivisionError, ...
    "silent",       # the bad input was accepted
    "nonfinite",    # a finite (bad) input gave NaN/inf
    "hang",         # ran past the time limit
    "crash",        # killed the process (only the tally can see this)
)


OTHER_ERRORS = (AttributeError, IndexError, KeyError, ZeroDivisionError, OverflowError,
                AssertionError, NotImplementedError, RecursionError, MemoryError,
                FloatingPointError, UnboundLocalError, NameError)


def classify(entry: Entry, arg: str, label: str, value) -> tuple[str, str]:
    """Runs one bad call; returns ``(category, detail)``."""
    kwargs = dict(entry.valid())
    kwargs[arg] = value
    try:
        with time_limit(CALL_TIMEOUT):
            out = entry.call(**kwargs)
            jax.block_until_ready(jax.tree.leaves(out)) if _numeric_leaves(out) else None
    except CallTimeout as error:
        return "hang", str(error)
    except (ValueError, TypeError) as error:
        message = f"{type(error).__name__}: {error}"
        if _origin(error) == "internal":
            return "internal", message
        return ("named" if entry.accepts(arg, str(error)) else "unnamed"), message
    except OTHER_ERRORS as error:
        return "other_error", f"{type(error).__name__}: {error}"
    except Exception as error:  # noqa: BLE001 - classifying is the point
        category = "internal" if _origin(error) == "internal" else "other_error"
        return category, f"{type(error).__name__}: {error}"
    if entry.check_output and label not in ("nan", "inf") and not all_finite(out):
        return "nonfinite", "finite input gave NaN/inf"
    return "silent", "accepted"


def check_valid(entry: Entry, *, half: str | None = None) -> str | None:
    """Runs the valid call (with float arguments in ``half`` precision if given); returns
    a failure message or None."""
    kwargs = dict(entry.valid())
    if half is not None:
        changed = False
        for arg, kind in entry.args.items():
            if isinstance(kind, Floats) and kind.half:
                kwargs[arg] = jnp.asarray(kwargs[arg], half)
                changed = True
        if not changed:
            return None
    try:
        with time_limit(CALL_TIMEOUT):
            out = entry.call(**kwargs)
    except CallTimeout as error:
        return f"hang: {error}"
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}"
    if entry.check_output and not all_finite(out):
        return "non-finite output"
    if entry.check_output and half is not None and (dtype := narrow_float(out)):
        return f"computes in {dtype}, not at least float32"
    return None


# --------------------------------------------------------------------------- the tests

# Modules that compute and return at least float32 for half-precision inputs. odes, solve,
# metrics and train compute in float32 internally and cast results back to the caller's
# dtype by design, which an output-dtype check cannot see: their own tests cover them.
OURS = {"cosent", "data", "lm", "nbce", "nn", "scorematching", "sector", "udm", "weakform"}

ENTRY_NAMES = sorted(entries())


@pytest.mark.parametrize("name", ENTRY_NAMES)
def test_bad_inputs_raise_errors_naming_the_argument(name):
    entry = entries()[name]
    cases = [(arg, label) for arg, label, _ in entry.cases()]
    if not cases:
        pytest.skip("no data arguments")

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        arg, label = data.draw(st.sampled_from(cases), label="case")
        value = entry.args[arg].draw(data, label, entry.valid()[arg])
        category, detail = classify(entry, arg, label, value)
        assert category == "named", f"{name}({arg}={label}): {category}: {detail}"

    run()


@_LONG_ONLY
@pytest.mark.parametrize("name", ENTRY_NAMES)
def test_valid_inputs_give_finite_outputs(name):
    entry = entries()[name]
    failure = check_valid(entry)
    assert failure is None, failure


@_LONG_ONLY
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", [n for n in ENTRY_NAMES if entries()[n].module in OURS])
def test_half_precision_works(name, half):
    entry = entries()[name]
    if not any(isinstance(k, Floats) and k.half for k in entry.args.values()):
        pytest.skip("no float array arguments")
    failure = check_valid(entry, half=half)
    assert failure is None, failure


def _arguments_with(flag: str) -> list[tuple[str, str]]:
    return [(name, arg) for name in ENTRY_NAMES for arg, kind in entries()[name].args.items()
            if isinstance(kind, Floats) and getattr(kind, flag)]


@pytest.mark.parametrize("name,arg", _arguments_with("empty_batch"))
def test_empty_batches_give_empty_outputs(name, arg):
    """Empty in, empty out: a ``(0, ...)`` batch gives outputs whose batch axis has size 0."""
    entry = entries()[name]
    kwargs = dict(entry.valid())
    kwargs[arg] = np.asarray(kwargs[arg])[:0]
    with time_limit(CALL_TIMEOUT):
        shapes = [leaf.shape for leaf in _numeric_leaves(entry.call(**kwargs))]
    assert shapes and all(len(s) >= 1 and s[0] == 0 for s in shapes), shapes


@pytest.mark.parametrize("name,arg", _arguments_with("scalar"))
def test_scalar_times_broadcast_over_the_batch(name, arg):
    """A scalar time gives what the same time repeated for every row gives."""
    entry = entries()[name]
    kwargs = dict(entry.valid())
    t = np.asarray(kwargs[arg])
    with time_limit(CALL_TIMEOUT):
        scalar = _numeric_leaves(entry.call(**{**kwargs, arg: t[1]}))
        repeated = _numeric_leaves(entry.call(**{**kwargs, arg: np.full_like(t, t[1])}))
    assert scalar
    for a, b in zip(scalar, repeated, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_sector_cli_validates_everything_before_printing(capsys):
    from diffusionlab.sector.__main__ import main
    assert main(["4", "pi", "--mc", "--samples", "-5"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "samples" in captured.err


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-p", "no:xdist"]))
