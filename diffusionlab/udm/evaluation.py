r"""The processes the experiments compare, trained on digits or 2-D toys, sampled and scored.

One trained :math:`\hat x_0` model serves every sampler that shares its forward process: DDPM
and DDIM share the hot model; Bansal et al.'s naive and improved cold samplers (the baseline
and deterministic kernels) share the cold model.

Everything that fixes the models is one :class:`Recipe`; the randomness is one ``key``
(training data of a toy, initialisation, training); trained models are kept on disk with
:func:`diffusionlab.cache.build_once` when a ``directory`` is given, so experiments with the
same recipe and key share one training run. Scores: :func:`diffusionlab.metrics.quality`
(FD-digits on digits, tokens drawn as images; sliced :math:`W_2` on 2-D toys); the diversity
of a sample set is its mean pairwise Euclidean distance.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import data, metrics, train
from diffusionlab.cache import build_once
from diffusionlab.udm.cold import ColdDiffusion
from diffusionlab.udm.edit import EditDiffusion
from diffusionlab.udm.encoder import EncoderDiffusion
from diffusionlab.udm.hot import HotDiffusion
from diffusionlab.udm.mask import MaskDiffusion
from diffusionlab.udm.networks import NetworkConfig
from diffusionlab.udm.sampler import sample
from diffusionlab.udm.training import TrainedModel, fit_process, load_model, save_model

DIGIT_SHAPE = (8, 8, 1)


DOMAINS = ("digits", "toy")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that fixes the compared processes and their trained models.

    Attributes:
      T_hot: steps of hot and encoder diffusion.
      T_cold: steps of cold diffusion.
      cold_sigma: the small noise of the noisy cold variant.
      levels: grey levels of the token view of the digits (the discrete vocabulary).
      train_steps, batch_size, learning_rate, ema_decay: the optimisation
        (:class:`diffusionlab.train.TrainConfig`).
      hidden, depth: the MLP (:class:`~diffusionlab.udm.networks.NetworkConfig`).
      toy: the 2-D toy of the ``"toy"`` domain (``diffusionlab.data.TOY2D_NAMES``).
      num_train: training examples drawn from the toy.
    """

    T_hot: int = 100
    T_cold: int = 20
    cold_sigma: float = 0.1
    levels: int = 8
    train_steps: int = 1500
    batch_size: int = 128
    learning_rate: float = 2e-3
    ema_decay: float = 0.995
    hidden: int = 256
    depth: int = 3
    toy: str = "8gaussians"
    num_train: int = 8192

    @classmethod
    def quick(cls) -> Recipe:
        """A tiny recipe for smoke runs: a few optimisation steps, small nets, short chains."""
        return cls(T_hot=10, T_cold=4, train_steps=10, batch_size=64, ema_decay=0.0, hidden=32, depth=1)

    @property
    def train_config(self) -> train.TrainConfig:
        return train.TrainConfig(
            steps=self.train_steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            ema_decay=self.ema_decay,
            log_every=max(1, min(250, self.train_steps)),
        )

    @property
    def network(self) -> NetworkConfig:
        return NetworkConfig(hidden=self.hidden, depth=self.depth)

    def dataset(self, domain: str) -> str:
        """The data set name of ``domain``: ``"digits"``, or the recipe's toy."""
        return "digits" if _domain(domain) == "digits" else self.toy

    def models(self, domain: str, *, key, names=None, directory=None) -> dict[str, TrainedModel]:
        """The trained models of ``domain``; see :func:`train_models`."""
        return train_models(self, domain=domain, key=key, names=names, directory=directory)


def _domain(domain: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}; got {domain!r}")
    return domain


class Sampler(NamedTuple):
    """A named way to sample: which trained model, and the process (kernel) used at sampling."""

    model: str
    process: Any


def model_processes(recipe: Recipe, *, domain: str) -> dict[str, Any]:
    """The processes to train, by name, for ``domain`` ``"digits"`` or ``"toy"`` (2-D)."""
    shape = DIGIT_SHAPE if _domain(domain) == "digits" else (2,)
    models = {
        "hot": HotDiffusion.ddpm(T=recipe.T_hot, event_shape=shape),
        "cold": ColdDiffusion("blur", sigma=0.0, T=recipe.T_cold, event_shape=shape),
        "cold_noisy": ColdDiffusion("blur", sigma=recipe.cold_sigma, T=recipe.T_cold, event_shape=shape),
        "encoder": EncoderDiffusion(T=recipe.T_hot, event_shape=shape),
    }
    if domain == "digits":
        models["edit"] = EditDiffusion(length=64, vocab=recipe.levels)
        models["mask"] = MaskDiffusion(length=64, vocab=recipe.levels)
    return models


def samplers(recipe: Recipe, *, domain: str) -> dict[str, Sampler]:
    """Every compared sampler, by display name (cold: Bansal et al.'s naive and improved)."""
    m = model_processes(recipe, domain=domain)
    s = recipe.cold_sigma
    table = {
        "hot DDPM": Sampler("hot", m["hot"]),
        "hot DDIM": Sampler("hot", HotDiffusion.ddim(T=recipe.T_hot, event_shape=m["hot"].event_shape)),
        "cold blur naive": Sampler("cold", dataclasses.replace(m["cold"], kernel="baseline")),
        "cold blur improved": Sampler("cold", m["cold"]),
        f"cold blur+noise({s}) naive": Sampler(
            "cold_noisy", dataclasses.replace(m["cold_noisy"], kernel="baseline")
        ),
        f"cold blur+noise({s}) improved": Sampler("cold_noisy", m["cold_noisy"]),
        "encoder": Sampler("encoder", None),  # the trained process carries the encoder
    }
    if domain == "digits":
        table["edit"] = Sampler("edit", m["edit"])
        table["edit (baseline kernel)"] = Sampler("edit", dataclasses.replace(m["edit"], kernel="baseline"))
        # Su's uniform prior is not the terminal law for a small vocabulary: the same network,
        # started from the forward process at t = l instead.
        table["edit (forward prior)"] = Sampler("edit", dataclasses.replace(m["edit"], prior_law="forward"))
        table["edit (Su's first version)"] = Sampler(
            "edit", dataclasses.replace(m["edit"], kernel="random_replacement"))
        table["mask"] = Sampler("mask", m["mask"])
        table["mask (baseline kernel)"] = Sampler("mask", dataclasses.replace(m["mask"], kernel="baseline"))
    return table


def training_data(name: str, recipe: Recipe, *, domain: str, key):
    """Training examples for model ``name``: digits (images, or tokens for edit and mask) or
    ``recipe.num_train`` draws of the toy at ``key`` (unused for digits)."""
    if name in ("edit", "mask") and domain == "digits":
        return data.digit_tokens("train", levels=recipe.levels)[0]
    return data.examples(recipe.dataset(domain), "train", num=None if domain == "digits"
                         else recipe.num_train, key=key)


def reference_data(recipe: Recipe, *, domain: str, num: int, key):
    """``num`` held-out examples (test images for digits; toy draws at ``key``) to score against."""
    return np.asarray(data.examples(recipe.dataset(domain), "test", num=num, key=key))


def train_models(recipe: Recipe, *, domain: str, key, names=None, directory=None
                 ) -> dict[str, TrainedModel]:
    """Trains the named models of ``domain`` (default: all of :func:`model_processes`).

    The key is split once: the toy's training data, then one key per model that folds in the
    model's position in :func:`model_processes`, so training a subset gives the same models as
    training them all.

    Args:
      recipe: the :class:`Recipe`.
      domain: ``"digits"`` or ``"toy"``.
      key: PRNG key of the whole set of models.
      names: the models to train (a subset of :func:`model_processes`).
      directory: where trained models are kept (one folder per recipe, domain, model and key,
        written once with :func:`diffusionlab.cache.build_once`); ``None`` trains in memory.

    Raises:
      ValueError: an unknown ``domain`` or model name.
    """
    processes = model_processes(recipe, domain=domain)
    order = list(processes)
    names = order if names is None else list(names)
    unknown = sorted(set(names) - set(order))
    if unknown:
        raise ValueError(f"names must be models of {order}; got {unknown}")
    k_data, k_models = jax.random.split(key)
    models = {}
    for name in names:
        x = training_data(name, recipe, domain=domain, key=k_data)
        k_model = jax.random.fold_in(k_models, order.index(name))

        def fit(name=name, x=x, k_model=k_model):
            return fit_process(processes[name], x, config=recipe.train_config,
                               network=recipe.network, key=k_model)

        if directory is None:
            models[name] = fit()
            continue
        folder = pathlib.Path(directory) / _model_folder(recipe, domain, name, k_model)
        built = build_once(folder, lambda staging, fit=fit: _fit_and_save(fit, staging))
        models[name] = built if built is not None else load_model(
            folder, processes[name], np.shape(x)[1:], recipe.network, key=k_model)
    return models


def _fit_and_save(fit, staging: pathlib.Path) -> TrainedModel:
    model = fit()
    save_model(staging, model)
    return model


def replicate_key(key, replicate: int, domain: str):
    """The models' key of training replicate ``replicate`` in ``domain``, from the run's models
    key: experiments that derive it alike (and share a recipe) share the trained models."""
    return jax.random.fold_in(jax.random.fold_in(key, replicate), DOMAINS.index(_domain(domain)))


def _model_folder(recipe: Recipe, domain: str, name: str, key) -> str:
    """A folder name that changes whenever the recipe, the domain, the model or its key does."""
    text = json.dumps({"recipe": dataclasses.asdict(recipe), "domain": domain, "model": name,
                       "key": np.asarray(jax.random.key_data(key)).tolist()}, sort_keys=True)
    return f"udm_{domain}_{name}_" + hashlib.sha1(text.encode()).hexdigest()[:10]


def prior_source(name: str, recipe: Recipe, *, domain: str, num: int, key):
    """Data whose shape (and, for cold diffusion, whose degraded values) seed :math:`x_T`:
    ``num`` training examples resampled at ``key`` (for a toy, from draws at ``key``)."""
    k_data, k_choice = jax.random.split(key)
    x = training_data(name, recipe, domain=domain, key=k_data)
    idx = jax.random.choice(k_choice, len(x), (num,), replace=len(x) < num)
    return jnp.asarray(x)[idx]


def draw(model: TrainedModel, process, source, *, steps: int | None, key):
    """Samples from ``model`` with ``process``'s kernel (default: the trained process)."""
    process = model.process if process is None else process
    k_prior, k_sample = jax.random.split(key)
    x_T = process.prior(source, key=k_prior)
    return sample(process, model.predict_x0, x_T, key=k_sample, steps=steps)


def as_images(samples, recipe: Recipe) -> np.ndarray:
    """Samples as ``(N, 8, 8, 1)`` images in [-1, 1] (tokens are drawn at their grey levels)."""
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        return data.tokens_to_images(samples, levels=recipe.levels)
    return np.clip(samples.reshape(-1, *DIGIT_SHAPE), -1.0, 1.0)


def score(samples, reference, recipe: Recipe, *, domain: str, key=None) -> float:
    """:func:`diffusionlab.metrics.quality` of ``samples`` (tokens drawn as images) against
    ``reference``: FD-digits (``digits``) or sliced W2 (``toy``, whose projections need ``key``)."""
    shown = as_images(samples, recipe) if _domain(domain) == "digits" else samples
    return metrics.quality(shown, reference, domain=domain, key=key)


@jax.jit
def _mean_pairwise_distance(x):
    d2 = jnp.sum(x**2, 1)[:, None] + jnp.sum(x**2, 1)[None, :] - 2 * x @ x.T
    n = x.shape[0]
    return jnp.sum(jnp.sqrt(jnp.maximum(d2, 0.0))) / (n * (n - 1))


def diversity(samples) -> float:
    """Mean pairwise Euclidean distance between the (flattened) samples."""
    x = jnp.asarray(samples, jnp.float32)
    return float(_mean_pairwise_distance(x.reshape(x.shape[0], -1)))


def steps_grid(T: int, fractions) -> list[int]:
    """Distinct reverse-step counts ``round(f T)`` (at least 1), ascending."""
    return sorted({max(1, min(T, round(f * T))) for f in fractions})


def quality_rows(
    models: dict[str, TrainedModel],
    table: dict[str, Sampler],
    recipe: Recipe,
    *,
    domain: str,
    fractions,
    seeds: int,
    num: int,
    key,
    phase=None,
) -> list[dict]:
    """Score (and diversity) of every sampler at every step count, mean and std over sampling
    seeds; the held-out reference is drawn at ``key``'s first split, each seed folds in.

    Each row also keeps the per-seed ``scores``: seed ``i`` of two calls with the same ``key``
    draws the same prior source and reference, so two model sets (a network and its exact
    predictor) scored alike are paired seed by seed.

    ``phase``, when given, is a context-manager factory called as ``phase("sampling")`` around
    each draw (which ends once the samples are computed) and ``phase("evaluation")`` around
    each scoring, e.g. an experiment's ``Output.phase`` to split its wall time."""
    phase = phase or (lambda name: contextlib.nullcontext())
    k_reference, key = jax.random.split(key)
    reference = reference_data(recipe, domain=domain, num=num, key=k_reference)
    rows = []
    for name, spec in table.items():
        model = models[spec.model]
        process = model.process if spec.process is None else spec.process
        for steps in steps_grid(process.T, fractions):
            scores, spreads = [], []
            for seed in range(seeds):
                k_source, k_draw, k_score = jax.random.split(jax.random.fold_in(key, seed), 3)
                with phase("sampling"):
                    source = prior_source(spec.model, recipe, domain=domain, num=num,
                                          key=k_source)
                    samples = jax.block_until_ready(
                        draw(model, process, source, steps=steps, key=k_draw))
                with phase("evaluation"):
                    scores.append(score(samples, reference, recipe, domain=domain, key=k_score))
                    shown = as_images(samples, recipe) if domain == "digits" else samples
                    spreads.append(diversity(shown))
            rows.append(
                {
                    "domain": domain,
                    "sampler": name,
                    "steps": steps,
                    "metric": metrics.quality_metric(domain),
                    "score_mean": float(np.mean(scores)),
                    "score_std": float(np.std(scores)),
                    "scores": [float(v) for v in scores],
                    "diversity_mean": float(np.mean(spreads)),
                    "diversity_std": float(np.std(spreads)),
                }
            )
    return rows
