r"""Fine-tuning the top of a pretrained BERT (all-MiniLM-L6-v2) with CoSENT and its baselines.

**What is frozen.** The token, position and segment embeddings, their LayerNorm and the lower
``depth - trainable_layers`` transformer blocks are frozen: their output for every text (bi-
encoder) or every text pair (cross-encoder) is computed once, by :func:`lower_states`, and
cached. Only the top ``trainable_layers`` blocks (default 1 of MiniLM's 6) and a new head are
trained. Bi-encoders pool by the masked mean (as all-MiniLM-L6-v2 was trained) and their head
is Sentence-BERT's classifier, used only by the ``"sbert"`` loss; the cross-encoder's head is
``Dense(1)`` on the [CLS] state, its raw output $f$ the pair score.

**Losses.** Bi-encoder (:data:`BI_LOSSES`):

* ``"cosent"``: CoSENT on $\lambda\cos(u, v)$, $\lambda = 20$ (苏剑林, "CoSENT（一）",
  https://kexue.fm/archives/8847);
* ``"sbert"``: softmax classifier on $[u, v, |u-v|]$ with cross-entropy on labels binarised
  at the midpoint of the score range (the essay binarises STS-B at 2.5 of 0-5);
* ``"cosine_mse"``: $(\cos(u, v) - t)^2$ with the target $t = (y - lo)/(hi - lo)\in[0, 1]$;
* ``"angle"``: AnglE, CoSENT on :func:`diffusionlab.cosent.angle.angle_similarity` (Li & Li,
  ACL 2024), $\lambda = 20$.

Every bi-encoder predicts with $\cos(u, v)$. Cross-encoder (:data:`CROSS_LOSSES`): input
``[CLS] a [SEP] b [SEP]`` with segment ids 0/1 (the reference code sets them all to 0; the
pretrained segment embeddings are used here), $f$ clipped to $\pm10^6$ as in the reference:

* ``"cosent"``: CoSENT on $f$ with no $\lambda$ (the head absorbs the scale;
  "CoSENT（三）", https://kexue.fm/archives/9341);
* ``"cross_entropy"``: binary cross-entropy of $\sigma(f)$ on the midpoint-binarised labels
  (a 2-way softmax). Its ranking score $p = \sigma(f)$ is monotone in $f$, so $f$ itself is
  ranked (no ties from saturation in float32).

**Protocol** (after the essays): Adam, batch 32 pairs, a few epochs; after every epoch the
validation and test pairs are scored; the epoch with the best validation Spearman is kept and
its test Spearman reported (:func:`best_epoch_spearman`). Every (loss, seed) model is trained
at once: parameters are stacked along a leading axis and one jitted program
(:func:`train_epoch`: a ``lax.scan`` over the steps of one epoch of the Adam step,
``vmap``-ed over the models) runs one epoch of all of them. The loss is picked by a one-hot
weight over the candidate losses, all computed from the same forward pass, so one program
serves every loss and seed. Models of the same seed start from the same head and see the same
batch order whatever their loss, so the comparison between losses is paired by seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats
from flax import nnx

from diffusionlab import _checks
from diffusionlab.cosent.angle import angle_similarity
from diffusionlab.cosent.baselines import (
    binary_cross_entropy_loss,
    cosine_mse_loss,
    sbert_softmax_loss,
)
from diffusionlab.cosent.loss import cosent_loss
from diffusionlab.cosent.pretrained import BertEncoder, WordPieceTokenizer

__all__ = ["BI_LOSSES", "CROSS_LOSSES", "CachedPairs", "FinetuneResult", "FinetuneSettings",
           "best_epoch_spearman", "cache_splits", "finetune", "init_models", "lower_states",
           "split_top", "top_states", "train_epoch"]

BI_LOSSES = ("cosent", "sbert", "cosine_mse", "angle")
CROSS_LOSSES = ("cosent", "cross_entropy")
KINDS = {"bi": BI_LOSSES, "cross": CROSS_LOSSES}
CLIP = 1e6  # the reference clips the cross-encoder output to ±1e6 before the loss


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    r"""Optimisation settings shared by every model of one call (static: part of the program).

    Attributes:
      trainable_layers: the top blocks trained, in ``[1, depth]``; the rest are frozen.
      epochs: passes over the training pairs (each pair once per epoch, drop-last batches).
      batch_size: pairs per step (the essays: 32).
      learning_rate: Adam's step size for the trained blocks.
      head_learning_rate: Adam's step size for the new head (Sentence-BERT classifier,
        cross-encoder ``Dense(1)``), which starts from random weights.
      scale: $\lambda$ of the bi-encoder CoSENT and AnglE losses (20); the cross-encoder
        uses none.
    """

    trainable_layers: int = 1
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3
    scale: float = 20.0

    def __post_init__(self):
        _checks.check_int(self.trainable_layers, "trainable_layers", low=1, high=10**4)
        _checks.check_int(self.epochs, "epochs", low=1, high=10**6)
        _checks.check_int(self.batch_size, "batch_size", low=2, high=10**6)
        _checks.check_real(self.learning_rate, "learning_rate", low=0, low_open=True)
        _checks.check_real(self.head_learning_rate, "head_learning_rate", low=0, low_open=True)
        _checks.check_real(self.scale, "scale", low=0, low_open=True)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CachedPairs:
    """One split's pairs with the frozen lower layers already applied.

    The rows of ``tokens``/``states`` are the distinct texts (bi-encoder) or the pairs
    themselves (cross-encoder, then ``first = second = arange(N)``).

    Attributes:
      tokens: ``(T, L)`` int32 token ids (0 = padding).
      states: ``(T, L, D)`` float32 hidden states after the frozen blocks.
      first, second: ``(N,)`` int32 rows of the two texts of each pair.
      labels: ``(N,)`` float32 graded labels (human ratings).
      binary: ``(N,)`` int32, 1 where the label lies above the midpoint of the score range.
      targets: ``(N,)`` float32 labels rescaled from the score range to ``[0, 1]``.
    """

    tokens: jax.Array
    states: jax.Array
    first: jax.Array
    second: jax.Array
    labels: jax.Array
    binary: jax.Array
    targets: jax.Array

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _fields(pairs: CachedPairs) -> list:
    return [getattr(pairs, f.name) for f in dataclasses.fields(pairs)]


def _check_encoder(encoder, trainable_layers):
    if not isinstance(encoder, BertEncoder):
        raise TypeError(f"encoder must be a BertEncoder; got {type(encoder).__name__}")
    return _checks.check_int(trainable_layers, "trainable_layers", low=1, high=encoder.depth)


def split_top(encoder: BertEncoder, trainable_layers: int):
    """``(graphdef, params)``: the top ``trainable_layers`` blocks as trainable parameters.

    ``params`` is a tuple of the blocks' states (copies; the encoder is not changed) and
    ``graphdef`` the structure they share.

    Raises:
      TypeError: ``encoder`` is not a :class:`BertEncoder`.
      ValueError: ``trainable_layers`` outside ``[1, depth]``.
    """
    trainable_layers = _check_encoder(encoder, trainable_layers)
    pieces = [nnx.split(layer) for layer in encoder.layers[encoder.depth - trainable_layers:]]
    graphdef = pieces[0][0]
    return graphdef, tuple(jax.tree.map(jnp.array, state) for _, state in pieces)


@eqx.filter_jit
def _lower_chunk(graphdef, state, tokens_BxL, types_BxL, frozen):
    return nnx.merge(graphdef, state).hidden(tokens_BxL, types_BxL, layers=slice(0, frozen))


def lower_states(encoder: BertEncoder, tokens_NxL, types_NxL=None, *, trainable_layers: int,
                 chunk: int = 128) -> jax.Array:
    """``(N, L, D)``: the frozen part of the forward pass, run once (embeddings and the
    lower ``depth - trainable_layers`` blocks), in chunks of ``chunk`` rows (the last one
    padded: one compiled program per length ``L``, whatever ``N``).

    With ``trainable_layers = depth`` this is the embedding output (after its LayerNorm).

    Raises:
      TypeError: a non-encoder, non-integer tokens.
      ValueError: ``trainable_layers`` outside ``[1, depth]``, token ids out of the
        vocabulary, types outside {0, 1} or of another shape, ``chunk < 1``.
    """
    trainable_layers = _check_encoder(encoder, trainable_layers)
    chunk = _checks.check_int(chunk, "chunk", low=1, high=10**6)
    tokens_NxL = np.asarray(_checks.int_array(tokens_NxL, "tokens_NxL", low=0,
                                              high=encoder.word.num_embeddings - 1, ndim=2,
                                              layout="(N, L)"), np.int32)
    if tokens_NxL.shape[1] > encoder.position.num_embeddings:
        raise ValueError(f"tokens_NxL has length {tokens_NxL.shape[1]} > the encoder's "
                         f"{encoder.position.num_embeddings} positions")
    if types_NxL is None:
        types_NxL = np.zeros_like(tokens_NxL)
    types_NxL = np.asarray(_checks.int_array(types_NxL, "types_NxL", low=0, high=1, ndim=2,
                                             layout="(N, L)"), np.int32)
    _checks.same_shape(tokens_NxL, types_NxL, names=("tokens_NxL", "types_NxL"))
    graphdef, state = nnx.split(encoder)
    frozen = encoder.depth - trainable_layers
    num = tokens_NxL.shape[0]
    # Every call gets `chunk` rows (the last one padded), so one program serves any N.
    padded = -(-num // chunk) * chunk
    tokens = np.zeros((padded, tokens_NxL.shape[1]), np.int32)
    types = np.zeros_like(tokens)
    tokens[:num], types[:num] = tokens_NxL, types_NxL
    out = [np.asarray(_lower_chunk(graphdef, state, tokens[i:i + chunk], types[i:i + chunk],
                                   frozen)) for i in range(0, padded, chunk)]
    return jnp.asarray(np.concatenate(out)[:num])


def top_states(graphdef, params, states_NxLxD, tokens_NxL) -> jax.Array:
    """``(N, L, D)``: the trainable top blocks applied to cached ``states_NxLxD``.

    ``top_states(*split_top(encoder, k), lower_states(encoder, x, t, trainable_layers=k), x)``
    equals ``encoder(x, t)`` (same operations).
    """
    mask_Nx1x1xL = (tokens_NxL != 0)[:, None, None, :]
    x_NxLxD = states_NxLxD
    for state in params:
        x_NxLxD = nnx.merge(graphdef, state)(x_NxLxD, mask_Nx1x1xL)
    return x_NxLxD


def cache_splits(encoder: BertEncoder, tokenizer: WordPieceTokenizer,
                 splits: Mapping[str, tuple], *, score_range: tuple[float, float], kind: str,
                 max_length: int, trainable_layers: int) -> dict[str, CachedPairs]:
    """Tokenizes every split and applies the frozen lower layers once (one padded length).

    Texts are truncated to ``max_length`` tokens including ``[CLS]``/``[SEP]`` (bi-encoder),
    pairs to ``2 * max_length`` (cross-encoder, longest-first truncation). All splits are
    padded to the longest sequence after truncation and run through the frozen blocks in one
    call of :func:`lower_states`; a bi-encoder split then holds the states of its own distinct
    texts only.

    Args:
      encoder, tokenizer: from :func:`diffusionlab.cosent.pretrained.load_minilm`.
      splits: ``{name: (first, second, scores)}``: ``N`` texts each and ``(N,)`` graded labels
        inside ``score_range``.
      score_range: ``(lo, hi)`` with ``lo < hi``: binarisation at the midpoint, targets
        ``(y - lo)/(hi - lo)``.
      kind: ``"bi"`` or ``"cross"``.
      max_length: tokens per text, at least 3.
      trainable_layers: blocks left for training (the lower ``depth - trainable_layers`` run
        here).

    Returns:
      ``{name: CachedPairs}``.

    Raises:
      TypeError: a non-encoder or non-tokenizer, splits not a mapping of triples.
      ValueError: a split with mismatched lengths or no pairs, scores outside the range, bad
        ``kind``/``max_length``/``trainable_layers``/``score_range``.
    """
    kind = _checks.check_choice(kind, "kind", tuple(KINDS))
    trainable_layers = _check_encoder(encoder, trainable_layers)
    if not isinstance(tokenizer, WordPieceTokenizer):
        raise TypeError(f"tokenizer must be a WordPieceTokenizer; got {type(tokenizer).__name__}")
    max_length = _checks.check_int(max_length, "max_length", low=3, high=2**15)
    lo, hi = (float(x) for x in score_range)
    if not hi > lo:
        raise ValueError(f"score_range must be (lo, hi) with lo < hi, got {score_range}")
    if not isinstance(splits, Mapping) or not splits:
        raise TypeError("splits must be a non-empty mapping {name: (first, second, scores)}")
    parsed = {}
    for name, value in splits.items():
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            raise TypeError(f"splits[{name!r}] must be a triple (first, second, scores)")
        first, second = [str(t) for t in value[0]], [str(t) for t in value[1]]
        scores = np.asarray(value[2], np.float64)
        if scores.ndim != 1 or not (len(first) == len(second) == scores.shape[0]):
            raise ValueError(f"splits[{name!r}]: first, second and scores must have one entry "
                             f"per pair, got {len(first)}, {len(second)} and shape {scores.shape}")
        if not first:
            raise ValueError(f"splits[{name!r}] holds no pairs")
        if not np.all(np.isfinite(scores)) or scores.min() < lo or scores.max() > hi:
            raise ValueError(f"splits[{name!r}]: scores must be finite and inside score_range "
                             f"{score_range}, got [{scores.min()}, {scores.max()}]")
        parsed[name] = (first, second, scores)
    # The frozen blocks run at length 2 * max_length for both kinds (one compiled program);
    # trailing padding is then cut: padded positions are masked out of attention, so the
    # states of the real tokens do not depend on how much padding follows them.
    if kind == "bi":
        texts = list(dict.fromkeys(t for f, s, _ in parsed.values() for t in f + s))
        tokens = np.full((len(texts), 2 * max_length), tokenizer.pad, np.int32)
        for r, text in enumerate(texts):
            ids = [tokenizer.cls, *tokenizer.encode(text)[: max_length - 2], tokenizer.sep]
            tokens[r, : len(ids)] = ids
        types = np.zeros_like(tokens)
    else:
        first = [t for f, _, _ in parsed.values() for t in f]
        second = [t for _, s, _ in parsed.values() for t in s]
        tokens, types = tokenizer.encode_pairs(first, second, max_length=2 * max_length)
    longest = int((tokens != tokenizer.pad).sum(1).max())
    states = np.asarray(lower_states(encoder, tokens, types,
                                     trainable_layers=trainable_layers))[:, :longest]
    tokens = tokens[:, :longest]
    midpoint, out, offset = 0.5 * (lo + hi), {}, 0
    for name, (first, second, scores) in parsed.items():
        if kind == "bi":
            own = list(dict.fromkeys(first + second))
            row = {t: i for i, t in enumerate(own)}
            index = {t: i for i, t in enumerate(texts)}
            rows = np.array([index[t] for t in own])
            first_N = np.array([row[t] for t in first], np.int32)
            second_N = np.array([row[t] for t in second], np.int32)
        else:
            rows = offset + np.arange(len(first))
            offset += len(first)
            first_N = second_N = np.arange(len(first), dtype=np.int32)
        out[name] = CachedPairs(
            jnp.asarray(tokens[rows]), jnp.asarray(states[rows]), jnp.asarray(first_N),
            jnp.asarray(second_N), jnp.asarray(scores, jnp.float32),
            jnp.asarray(scores > midpoint, jnp.int32),
            jnp.asarray((scores - lo) / (hi - lo), jnp.float32))
    return out


# ---------------------------------------------------------------------------------------
# The trained part: top blocks + head, and the losses
# ---------------------------------------------------------------------------------------


def _pool(h_NxLxD, tokens_NxL):
    return BertEncoder.pool(h_NxLxD, tokens_NxL)


def _cosine(u_BxD, v_BxD):
    u = u_BxD / jnp.maximum(jnp.linalg.norm(u_BxD, axis=-1, keepdims=True), 1e-12)
    v = v_BxD / jnp.maximum(jnp.linalg.norm(v_BxD, axis=-1, keepdims=True), 1e-12)
    return jnp.sum(u * v, axis=-1)


def _bi_embeddings(graphdef, params, data: CachedPairs, rows_R):
    """Pooled embeddings of the rows ``rows_R`` of ``data`` after the trained blocks."""
    tokens = data.tokens[rows_R]
    return _pool(top_states(graphdef, params["layers"], data.states[rows_R], tokens), tokens)


def _cross_scores(graphdef, params, data: CachedPairs, rows_B):
    h_BxLxD = top_states(graphdef, params["layers"], data.states[rows_B], data.tokens[rows_B])
    f_B = h_BxLxD[:, 0] @ params["head"]["kernel"][:, 0] + params["head"]["bias"][0]
    return jnp.clip(f_B, -CLIP, CLIP)


def _losses(kind, graphdef, params, data: CachedPairs, idx_B, settings: FinetuneSettings):
    """The vector of candidate losses of one batch, from one forward pass."""
    labels, binary, targets = data.labels[idx_B], data.binary[idx_B], data.targets[idx_B]
    if kind == "cross":
        f_B = _cross_scores(graphdef, params, data, idx_B)
        return jnp.stack([cosent_loss(f_B, labels, scale=1.0),
                          jnp.mean(binary_cross_entropy_loss(f_B, binary))])
    num_texts, batch = data.tokens.shape[0], idx_B.shape[0]
    if num_texts <= 2 * batch:  # fewer distinct texts than a batch holds: run them all once
        e_TxD = _bi_embeddings(graphdef, params, data, jnp.arange(num_texts))
        u_BxD, v_BxD = e_TxD[data.first[idx_B]], e_TxD[data.second[idx_B]]
    else:
        e_2BxD = _bi_embeddings(graphdef, params, data,
                                jnp.concatenate([data.first[idx_B], data.second[idx_B]]))
        u_BxD, v_BxD = e_2BxD[:batch], e_2BxD[batch:]
    cos_B = _cosine(u_BxD, v_BxD)
    features = jnp.concatenate([u_BxD, v_BxD, jnp.abs(u_BxD - v_BxD)], axis=-1)
    logits_Bx2 = features @ params["head"]["kernel"] + params["head"]["bias"][None, :]
    return jnp.stack([
        cosent_loss(cos_B, labels, scale=settings.scale),
        jnp.mean(sbert_softmax_loss(logits_Bx2, binary)),
        jnp.mean(cosine_mse_loss(cos_B, targets)),
        cosent_loss(angle_similarity(u_BxD, v_BxD), labels, scale=settings.scale),
    ])


def _scores(kind, graphdef, params, data: CachedPairs):
    """``(N,)`` pair scores of a whole split: cosines (bi) or head outputs (cross)."""
    if kind == "cross":
        return _cross_scores(graphdef, params, data, jnp.arange(data.tokens.shape[0]))
    e_TxD = _bi_embeddings(graphdef, params, data, jnp.arange(data.tokens.shape[0]))
    return _cosine(e_TxD[data.first], e_TxD[data.second])


def _optimizer(settings: FinetuneSettings):
    labels = {"layers": "layers", "head": "head"}
    return optax.multi_transform(
        {"layers": optax.adam(settings.learning_rate),
         "head": optax.adam(settings.head_learning_rate)},
        lambda params: {k: jax.tree.map(lambda _, k=k: labels[k], v) for k, v in params.items()})


def _batch(num: int, settings: FinetuneSettings):
    batch = min(settings.batch_size, num)
    return batch, num // batch


def _one_step(kind, graphdef, settings, params, opt_state, weights_K, key, step, train):
    """One Adam step of one model on the batch of global step ``step`` (traced)."""
    num = train.labels.shape[0]
    batch, steps_per_epoch = _batch(num, settings)
    # A fresh permutation per epoch from the model's own key: each pair once per epoch.
    key = jax.random.wrap_key_data(key)
    order = jax.random.permutation(jax.random.fold_in(key, step // steps_per_epoch), num)
    idx_B = jax.lax.dynamic_slice(order, ((step % steps_per_epoch) * batch,), (batch,))

    def loss_fn(p):
        return jnp.dot(weights_K, _losses(kind, graphdef, p, train, idx_B, settings))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = _optimizer(settings).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def _vmapped_step(kind, graphdef, settings, params_R, opt_R, weights_RxK, keys_R, step, train):
    return jax.vmap(
        lambda p, o, w, k: _one_step(kind, graphdef, settings, p, o, w, k, step, train)
    )(params_R, opt_R, weights_RxK, keys_R)


@eqx.filter_jit
def train_epoch(kind, graphdef, settings, params_R, opt_R, weights_RxK, keys_R, epoch, train,
                evaluation):
    """One epoch of all ``R`` stacked models, then their scores on ``evaluation`` (jitted).

    The one compiled training program: a ``lax.scan`` of the Adam step of every model
    (``vmap``) over the epoch's steps. Compiled once per (kind, settings, shapes): new
    parameters, keys or a new ``epoch`` reuse it. ``keys_R`` is the uint32 key data of each
    model's batch-order key (from :func:`init_models`); ``epoch`` a JAX integer (traced),
    which fixes the permutation of the training pairs.

    Returns:
      ``(params_R, opt_R, losses_RxS, before_RxN, after_RxN)``: the training loss of each
      step and the pair scores of ``evaluation`` before and after the epoch (scoring is
      cheap next to training, and this way one program serves the whole run).
    """
    num = train.labels.shape[0]
    _, steps_per_epoch = _batch(num, settings)

    def body(carry, step):
        params_R, opt_R = carry
        params_R, opt_R, loss_R = _vmapped_step(kind, graphdef, settings, params_R, opt_R,
                                                weights_RxK, keys_R, step, train)
        return (params_R, opt_R), loss_R

    def score(params_R):
        return jax.vmap(lambda p: _scores(kind, graphdef, p, evaluation))(params_R)

    before_RxN = score(params_R)
    (params_R, opt_R), losses_SxR = jax.lax.scan(
        body, (params_R, opt_R), epoch * steps_per_epoch + jnp.arange(steps_per_epoch))
    return params_R, opt_R, losses_SxR.T, before_RxN, score(params_R)


def init_models(kind: str, top_params, *, num_losses: int, num_seeds: int, dim: int,
                settings: FinetuneSettings, key: jax.Array):
    """Stacked parameters and optimiser states of ``num_losses * num_seeds`` models.

    Rows are (loss, seed) with the seed fastest. Every model starts from the pretrained top
    blocks ``top_params``. The head of seed ``s`` (LeCun normal kernel, zero bias) and its
    batch-order key are drawn host-side by ``numpy.random.default_rng([*key_data(key), s])``
    (no compiled program), and are the same for every loss.

    Returns:
      ``(params_R, opt_R, keys_R)``: ``keys_R`` is the ``(R, ...)`` uint32 key data of each
      model's batch-order key (the same across losses for one seed).

    Raises:
      ValueError, TypeError: an unknown kind, a bad key or counts.
    """
    kind = _checks.check_choice(kind, "kind", tuple(KINDS))
    key = _checks.single_key(key)
    num_losses = _checks.check_int(num_losses, "num_losses", low=1, high=10**4)
    num_seeds = _checks.check_int(num_seeds, "num_seeds", low=1, high=10**4)
    key_data = np.asarray(jax.random.key_data(key))
    head_in, head_out = (3 * dim, 2) if kind == "bi" else (dim, 1)
    heads, orders = [], []
    for seed in range(num_seeds):
        rng = np.random.default_rng([*key_data.ravel().tolist(), seed])
        heads.append({"kernel": (rng.standard_normal((head_in, head_out)) / np.sqrt(head_in)
                                 ).astype(np.float32),
                      "bias": np.zeros((head_out,), np.float32)})
        orders.append(rng.integers(0, 2**32, size=key_data.shape, dtype=np.uint32))
    rows = num_losses * num_seeds
    seed_of_row = np.tile(np.arange(num_seeds), num_losses)
    params_R = {
        "layers": jax.tree.map(lambda x: jnp.asarray(np.broadcast_to(np.asarray(x),
                                                                     (rows, *x.shape))),
                               top_params),
        "head": {k: jnp.asarray(np.stack([heads[s][k] for s in seed_of_row]))
                 for k in ("kernel", "bias")}}
    # Adam starts from zeros (count, first and second moments): built without compiling.
    shapes = jax.eval_shape(jax.vmap(_optimizer(settings).init), params_R)
    opt_R = jax.tree.map(lambda x: jnp.asarray(np.zeros(x.shape, x.dtype)), shapes)
    return params_R, opt_R, jnp.asarray(np.stack([orders[s] for s in seed_of_row]))


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """Scores of every (loss, seed) model after every epoch.

    Attributes:
      kind: ``"bi"`` or ``"cross"``.
      losses: the loss names along axis 0.
      num_seeds: models per loss along axis 1.
      train_loss: ``(M, S, epochs * steps_per_epoch)``.
      valid_scores: ``(M, S, epochs + 1, N_valid)``; index 0 is before training.
      test_scores: ``(M, S, epochs + 1, N_test)``.
      valid_labels, test_labels: ``(N_valid,)``, ``(N_test,)`` the human ratings.
    """

    kind: str
    losses: tuple[str, ...]
    num_seeds: int
    train_loss: np.ndarray
    valid_scores: np.ndarray
    test_scores: np.ndarray
    valid_labels: np.ndarray
    test_labels: np.ndarray


def _spearman(scores, labels) -> float:
    if np.ptp(scores) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(scipy.stats.spearmanr(scores, labels).statistic)


def best_epoch_spearman(result: FinetuneResult) -> dict[str, np.ndarray]:
    """Model selection as in the essays: per model, the epoch (1..E) with the best validation
    Spearman, and the test Spearman there.

    Returns:
      ``{"valid": (M, S, E+1), "test": (M, S, E+1)`` Spearman after every epoch (index 0:
      before training), ``"best_epoch": (M, S)``, ``"best_valid": (M, S)``,
      ``"test_at_best": (M, S)``}``.
    """
    if not isinstance(result, FinetuneResult):
        raise TypeError(f"result must be a FinetuneResult; got {type(result).__name__}")
    valid = np.vectorize(lambda *i: _spearman(result.valid_scores[i], result.valid_labels))(
        *np.indices(result.valid_scores.shape[:3]))
    test = np.vectorize(lambda *i: _spearman(result.test_scores[i], result.test_labels))(
        *np.indices(result.test_scores.shape[:3]))
    best = 1 + np.argmax(valid[:, :, 1:], axis=2)
    take = lambda a: np.take_along_axis(a, best[..., None], axis=2)[..., 0]  # noqa: E731
    return {"valid": valid, "test": test, "best_epoch": best, "best_valid": take(valid),
            "test_at_best": take(test)}


def finetune(encoder: BertEncoder, kind: str, losses: Sequence[str],
             splits: Mapping[str, CachedPairs], *, num_seeds: int = 3,
             settings: FinetuneSettings = FinetuneSettings(), key: jax.Array) -> FinetuneResult:
    """Trains one model per (loss, seed): the top ``settings.trainable_layers`` blocks and a
    head, on cached lower-layer states, scoring validation and test after every epoch.

    Args:
      encoder: the pretrained :class:`BertEncoder` (not modified).
      kind: ``"bi"`` or ``"cross"``.
      losses: names from :data:`BI_LOSSES` or :data:`CROSS_LOSSES`.
      splits: ``{"train", "valid", "test"}`` from :func:`cache_pairs` with the same ``kind``
        and ``trainable_layers``; valid and test must share one padded length.
      num_seeds: seeds per loss (>= 1); seed ``s`` uses ``jax.random.split(key, num_seeds)[s]``.
      settings: :class:`FinetuneSettings`.
      key: the run's randomness (heads and batch orders).

    Returns:
      A :class:`FinetuneResult`.

    Raises:
      TypeError, ValueError: unknown kind or losses, malformed splits, bad settings or key.
    """
    kind = _checks.check_choice(kind, "kind", tuple(KINDS))
    if isinstance(losses, str) or not isinstance(losses, (tuple, list)):
        raise TypeError(f"losses must be a tuple of loss names; got {losses!r}")
    unknown = [name for name in losses if name not in KINDS[kind]]
    if unknown or not losses or len(set(losses)) != len(losses):
        raise ValueError(f"losses for a {kind}-encoder must be distinct names from "
                         f"{KINDS[kind]}, got {tuple(losses)}")
    if not isinstance(settings, FinetuneSettings):
        raise TypeError(f"settings must be a FinetuneSettings; got {type(settings).__name__}")
    _check_encoder(encoder, settings.trainable_layers)
    num_seeds = _checks.check_int(num_seeds, "num_seeds", low=1, high=10**4)
    if not isinstance(splits, Mapping) or not all(
            isinstance(splits.get(s), CachedPairs) for s in ("train", "valid", "test")):
        raise TypeError("splits must map 'train', 'valid' and 'test' to CachedPairs "
                        "(from cache_pairs)")
    valid, test = splits["valid"], splits["test"]
    if valid.tokens.shape[1] != test.tokens.shape[1]:
        raise ValueError(f"valid and test must share one padded length (pass length= to "
                         f"cache_pairs), got {valid.tokens.shape[1]} and {test.tokens.shape[1]}")
    dim = splits["train"].states.shape[-1]
    if any(s.states.shape[-1] != dim for s in splits.values()):
        raise ValueError("the splits' states have different widths")
    # Validation and test are scored in one pass: their rows concatenated.
    offset = valid.tokens.shape[0]
    evaluation = CachedPairs(*(
        jnp.asarray(np.concatenate([np.asarray(v), np.asarray(t) + shift]))
        for v, t, shift in zip(_fields(valid), _fields(test), (0, 0, offset, offset, 0, 0, 0),
                               strict=True)))
    graphdef, top_params = split_top(encoder, settings.trainable_layers)
    params_R, opt_R, keys_R = init_models(kind, top_params, num_losses=len(losses),
                                          num_seeds=num_seeds, dim=dim, settings=settings,
                                          key=key)
    eye = np.eye(len(KINDS[kind]), dtype=np.float32)
    weights_RxK = jnp.asarray(np.repeat(eye[[KINDS[kind].index(n) for n in losses]], num_seeds,
                                        axis=0))
    scores, train_losses = [], []
    for epoch in range(settings.epochs):  # a loop over epochs; the steps are scanned
        params_R, opt_R, loss_RxS, before_RxN, after_RxN = train_epoch(
            kind, graphdef, settings, params_R, opt_R, weights_RxK, keys_R,
            jnp.asarray(epoch, jnp.int32), splits["train"], evaluation)
        scores += [before_RxN, after_RxN] if epoch == 0 else [after_RxN]
        train_losses.append(loss_RxS)
    scores_RxExN = np.stack([np.asarray(s) for s in scores], axis=1)
    shape = (len(losses), num_seeds)
    num_valid = len(valid)
    return FinetuneResult(
        kind, tuple(losses), num_seeds,
        np.concatenate([np.asarray(x) for x in train_losses], axis=1).reshape(*shape, -1),
        scores_RxExN[..., :num_valid].reshape(*shape, settings.epochs + 1, -1),
        scores_RxExN[..., num_valid:].reshape(*shape, settings.epochs + 1, -1),
        np.asarray(valid.labels), np.asarray(test.labels))
