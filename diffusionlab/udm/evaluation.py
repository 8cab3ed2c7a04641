r"""The processes the experiments compare, trained on digits or 2-D toys, sampled and scored.

One trained :math:`\hat x_0` model serves every sampler that shares its forward process: DDPM
and DDIM share the hot model; the naive and improved cold samplers share the cold model.

Scores: FD-digits (digits, tokens drawn as images) and sliced :math:`W_2` (2-D toys); the
diversity of a sample set is its mean pairwise Euclidean distance.

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

import dataclasses
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


def training_data(name: str, setting: Setting, *, domain: str, toy: str = "8gaussians", num: int = 8192,
                  key=None):
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


def train_models(setting: Setting, *, domain: str, config: train.TrainConfig, network: NetworkConfig,
                 names=None, toy: str = "8gaussians", key) -> dict[str, TrainedModel]:
    """Trains the named models (default: all of :func:`model_processes`)."""
    processes = model_processes(setting, domain=domain)
    names = list(processes) if names is None else list(names)
    models = {}
    for i, name in enumerate(names):
        x = training_data(name, setting, domain=domain, toy=toy)
        models[name] = fit_process(processes[name], x, config=config, network=network,
                                   key=jax.random.fold_in(key, i))
    return models


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
