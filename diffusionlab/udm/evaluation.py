r"""The processes the experiments compare, trained on digits or 2-D toys, sampled and scored.

One trained :math:`\hat x_0` model serves every sampler that shares its forward process: DDPM
and DDIM share the hot model; the naive and improved cold samplers share the cold model.

Scores: FD-digits (digits, tokens drawn as images) and sliced :math:`W_2` (2-D toys); the
diversity of a sample set is its mean pairwise Euclidean distance.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffusionlab import data, metrics, train
from diffusionlab.udm.cold import ColdDiffusion
from diffusionlab.udm.edit import EditDiffusion
from diffusionlab.udm.encoder import EncoderDiffusion
from diffusionlab.udm.hot import HotDiffusion
from diffusionlab.udm.mask import MaskDiffusion
from diffusionlab.udm.networks import NetworkConfig
from diffusionlab.udm.sampler import sample
from diffusionlab.udm.training import TrainedModel, fit_process

DIGIT_SHAPE = (8, 8, 1)


@dataclasses.dataclass(frozen=True)
class Setting:
    """Sizes of the compared processes.

    Attributes:
      T_hot: steps of hot and encoder diffusion.
      T_cold: steps of cold diffusion.
      cold_sigma: the small noise of the noisy cold variant.
      levels: grey levels of the token view of the digits (the discrete vocabulary).
    """

    T_hot: int = 100
    T_cold: int = 20
    cold_sigma: float = 0.1
    levels: int = 8


class Sampler(NamedTuple):
    """A named way to sample: which trained model, and the process (kernel) used at sampling."""

    model: str
    process: Any


def model_processes(setting: Setting, *, domain: str) -> dict[str, Any]:
    """The processes to train, by name, for ``domain`` ``"digits"`` or ``"toy"`` (2-D)."""
    shape = DIGIT_SHAPE if domain == "digits" else (2,)
    models = {
        "hot": HotDiffusion.ddpm(T=setting.T_hot, event_shape=shape),
        "cold": ColdDiffusion("blur", sigma=0.0, T=setting.T_cold, event_shape=shape),
        "cold_noisy": ColdDiffusion("blur", sigma=setting.cold_sigma, T=setting.T_cold, event_shape=shape),
        "encoder": EncoderDiffusion(T=setting.T_hot, event_shape=shape),
    }
    if domain == "digits":
        models["edit"] = EditDiffusion(length=64, vocab=setting.levels)
        models["mask"] = MaskDiffusion(length=64, vocab=setting.levels)
    return models


def samplers(setting: Setting, *, domain: str) -> dict[str, Sampler]:
    """Every compared sampler, by display name."""
    m = model_processes(setting, domain=domain)
    s = setting.cold_sigma
    table = {
        "hot DDPM": Sampler("hot", m["hot"]),
        "hot DDIM": Sampler("hot", HotDiffusion.ddim(T=setting.T_hot, event_shape=m["hot"].event_shape)),
        "cold blur naive": Sampler("cold", dataclasses.replace(m["cold"], sampler="naive")),
        "cold blur improved": Sampler("cold", m["cold"]),
        f"cold blur+noise({s}) naive": Sampler(
            "cold_noisy", dataclasses.replace(m["cold_noisy"], sampler="naive")
        ),
        f"cold blur+noise({s}) improved": Sampler("cold_noisy", m["cold_noisy"]),
        "encoder": Sampler("encoder", None),  # the trained process carries the encoder
    }
    if domain == "digits":
        table["edit"] = Sampler("edit", m["edit"])
        table["edit (baseline kernel)"] = Sampler("edit", dataclasses.replace(m["edit"], kernel="baseline"))
        table["mask"] = Sampler("mask", m["mask"])
        table["mask (baseline kernel)"] = Sampler("mask", dataclasses.replace(m["mask"], kernel="baseline"))
    return table


def training_data(
    name: str, setting: Setting, *, domain: str, toy: str = "8gaussians", num: int = 8192, key=None
):
    """Training examples for model ``name``: digits (images or tokens) or a 2-D toy."""
    if domain == "toy":
        return data.toy2d(toy, num, key=jax.random.key(0) if key is None else key)
    if name in ("edit", "mask"):
        return data.digit_tokens("train", levels=setting.levels)[0]
    return data.digits("train")[0]


def reference_data(setting: Setting, *, domain: str, toy: str = "8gaussians", num: int = 1000):
    """Held-out examples (images for digits) to score samples against."""
    if domain == "toy":
        return np.asarray(data.toy2d(toy, num, key=jax.random.key(12345)))
    return data.digits("test")[0][:num]


def train_models(
    setting: Setting,
    *,
    domain: str,
    config: train.TrainConfig,
    network: NetworkConfig,
    names=None,
    toy: str = "8gaussians",
    key,
) -> dict[str, TrainedModel]:
    """Trains the named models (default: all of :func:`model_processes`).

    Each model's key folds in its position in :func:`model_processes`, so training a subset
    gives the same models as training them all.
    """
    processes = model_processes(setting, domain=domain)
    order = list(processes)
    names = order if names is None else list(names)
    models = {}
    for name in names:
        x = training_data(name, setting, domain=domain, toy=toy)
        models[name] = fit_process(
            processes[name], x, config=config, network=network, key=jax.random.fold_in(key, order.index(name))
        )
    return models


@functools.lru_cache(maxsize=4)
def trained_models(
    setting: Setting,
    *,
    domain: str,
    config: train.TrainConfig,
    network: NetworkConfig,
    toy: str = "8gaussians",
    seed: int = 0,
) -> dict[str, TrainedModel]:
    """:func:`train_models` with seed ``seed``, memoised: experiments in one process share the models."""
    return train_models(
        setting, domain=domain, config=config, network=network, toy=toy, key=jax.random.key(seed)
    )


def prior_source(name: str, setting: Setting, *, domain: str, num: int, toy: str = "8gaussians", key):
    """Data whose shape (and, for cold diffusion, whose degraded values) seed :math:`x_T`."""
    x = training_data(name, setting, domain=domain, toy=toy)
    idx = jax.random.choice(key, len(x), (num,), replace=len(x) < num)
    return jnp.asarray(x)[idx]


def draw(model: TrainedModel, process, source, *, steps: int | None, key):
    """Samples from ``model`` with ``process``'s kernel (default: the trained process)."""
    process = model.process if process is None else process
    k_prior, k_sample = jax.random.split(key)
    x_T = process.prior(source, key=k_prior)
    return sample(process, model.predict_x0, x_T, key=k_sample, steps=steps)


def as_images(samples, setting: Setting) -> np.ndarray:
    """Samples as ``(N, 8, 8, 1)`` images in [-1, 1] (tokens are drawn at their grey levels)."""
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        return data.tokens_to_images(samples, levels=setting.levels)
    return np.clip(samples.reshape(-1, *DIGIT_SHAPE), -1.0, 1.0)


def score(samples, reference, setting: Setting, *, domain: str, key=None) -> float:
    """FD-digits (``digits``) or sliced W2 (``toy``) of ``samples`` against ``reference``."""
    if domain == "toy":
        key = jax.random.key(7) if key is None else key
        return float(metrics.sliced_wasserstein(jnp.asarray(samples), jnp.asarray(reference), key=key))
    return float(metrics.fd_digits(as_images(samples, setting), reference))


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
    setting: Setting,
    *,
    domain: str,
    fractions,
    seeds: int,
    num: int,
    toy: str = "8gaussians",
    key,
) -> list[dict]:
    """Score (and diversity) of every sampler at every step count, mean and std over sampling seeds."""
    reference = reference_data(setting, domain=domain, toy=toy, num=num)
    rows = []
    for name, spec in table.items():
        model = models[spec.model]
        process = model.process if spec.process is None else spec.process
        for steps in steps_grid(process.T, fractions):
            scores, spreads = [], []
            for seed in range(seeds):
                k_source, k_draw, k_score = jax.random.split(jax.random.fold_in(key, seed), 3)
                source = prior_source(spec.model, setting, domain=domain, num=num, toy=toy, key=k_source)
                samples = draw(model, process, source, steps=steps, key=k_draw)
                scores.append(score(samples, reference, setting, domain=domain, key=k_score))
                shown = as_images(samples, setting) if domain == "digits" else samples
                spreads.append(diversity(shown))
            rows.append(
                {
                    "domain": domain,
                    "sampler": name,
                    "steps": steps,
                    "metric": "FD-digits" if domain == "digits" else "sliced W2",
                    "score_mean": float(np.mean(scores)),
                    "score_std": float(np.std(scores)),
                    "diversity_mean": float(np.mean(spreads)),
                    "diversity_std": float(np.std(spreads)),
                }
            )
    return rows


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that fixes the trained models: process sizes, network and optimisation.

    Experiments that share a recipe share the trained models (see :func:`trained_models`).
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
    seed: int = 0

    @classmethod
    def quick(cls) -> Recipe:
        """A tiny recipe for smoke runs: a few optimisation steps, small nets, short chains."""
        return cls(T_hot=10, T_cold=4, train_steps=10, batch_size=64, ema_decay=0.0, hidden=32, depth=1)

    @property
    def setting(self) -> Setting:
        return Setting(T_hot=self.T_hot, T_cold=self.T_cold, cold_sigma=self.cold_sigma, levels=self.levels)

    @property
    def train_config(self) -> train.TrainConfig:
        return train.TrainConfig(
            steps=self.train_steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            ema_decay=self.ema_decay,
            log_every=max(1, min(250, self.train_steps)),
            seed=self.seed,
        )

    @property
    def network(self) -> NetworkConfig:
        return NetworkConfig(hidden=self.hidden, depth=self.depth)

    def models(self, domain: str, *, names=None) -> dict[str, TrainedModel]:
        """The trained models of ``domain``: all of them (memoised), or only ``names``
        (trained on each call; the same models as in the full set)."""
        seed = self.seed + (domain == "toy")
        if names is not None:
            return train_models(
                self.setting,
                domain=domain,
                config=self.train_config,
                network=self.network,
                names=names,
                toy=self.toy,
                key=jax.random.key(seed),
            )
        return trained_models(
            self.setting,
            domain=domain,
            config=self.train_config,
            network=self.network,
            toy=self.toy,
            seed=seed,
        )
