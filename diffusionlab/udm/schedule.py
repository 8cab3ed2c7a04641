r"""Noise schedules in Su's notation: :math:`\bar\alpha_t` and :math:`\bar\beta_t`, ``t = 0..T``.

Su writes one step as :math:`x_t=\alpha_t x_{t-1}+\beta_t\varepsilon` with
:math:`\alpha_t^2+\beta_t^2=1`, :math:`\bar\alpha_t=\prod_{s\le t}\alpha_s` and
:math:`\bar\beta_t=\sqrt{1-\bar\alpha_t^2}`. Translated to Ho et al.:
:math:`\bar\alpha_t^{\rm Su}=\sqrt{\bar\alpha_t^{\rm Ho}}` (the **square root**),
:math:`\beta_t^{\rm Su}=\sqrt{\beta_t^{\rm Ho}}` (a standard deviation, not a variance).

Reference: 苏剑林, 生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from diffusionlab import _checks
from diffusionlab.schedules import VPSchedule

SCHEDULES = ("linear", "cosine")
# Ho's linear schedule is the continuous VP schedule with these ends, sampled at t/T.
_LINEAR_VP = VPSchedule(beta_min=0.1, beta_max=20.0)


class Schedule(NamedTuple):
    """Float64 numpy arrays of length ``T + 1`` (index ``t``), in Su's notation.

    Attributes:
      alpha: :math:`\\alpha_t` (``alpha[0] = 1``).
      beta: :math:`\\beta_t=\\sqrt{1-\\alpha_t^2}` (``beta[0] = 0``).
      alpha_bar: :math:`\\bar\\alpha_t=\\prod_{s\\le t}\\alpha_s` (``alpha_bar[0] = 1``).
      beta_bar: :math:`\\bar\\beta_t=\\sqrt{1-\\bar\\alpha_t^2}` (``beta_bar[0] = 0``).
    """

    alpha: np.ndarray
    beta: np.ndarray
    alpha_bar: np.ndarray
    beta_bar: np.ndarray


def schedule(T: int, kind: str = "linear") -> Schedule:
    r"""Su's :math:`\alpha_t,\beta_t,\bar\alpha_t,\bar\beta_t` for ``T`` steps.

    ``linear`` is Ho et al.'s linear variance schedule in its continuous-time form (the VP SDE
    with :math:`\beta(\tau)=0.1+19.9\tau`, :class:`diffusionlab.schedules.VPSchedule`), sampled
    at :math:`\tau=t/T`: :math:`\bar\alpha_t^{\rm Ho}=\exp(-0.1\tau-9.95\tau^2)`, i.e. Su's
    :math:`\bar\alpha_t` is the VP :math:`\alpha_\tau`. At ``T = 1000`` this is Ho's
    ``1e-4 .. 0.02`` to first order, and it stays valid for small ``T`` (e.g. 10 steps), with
    :math:`\bar\alpha_T^{\rm Ho}=e^{-10.05}` for every ``T``. ``cosine`` is Nichol & Dhariwal's.

    Raises:
      TypeError: if ``T`` is not an integer or ``kind`` not a string.
      ValueError: if ``T`` is outside ``[1, 2**31 - 1]`` or too large for this machine's memory,
        or ``kind`` is not one of ``"linear"``, ``"cosine"``.
    """
    T = _checks.check_int(T, "T", low=1)
    _checks.check_choice(kind, "kind", SCHEDULES)
    # about a dozen float64 arrays of length T + 1 while building the four tables
    _checks.check_fits_memory("T", 12 * 8.0 * (T + 1), "the noise schedule")
    return _schedule(T, kind)


@functools.lru_cache(maxsize=64)
def _schedule(T: int, kind: str) -> Schedule:
    if kind == "linear":
        tau = np.arange(T + 1, dtype=np.float64) / T
        # = -0.1 tau - 9.95 tau², to the bit (see diffusionlab.schedules).
        log_alpha_bar_ho = 2.0 * _LINEAR_VP.log_alpha(tau)
        beta_ho = -np.expm1(np.diff(log_alpha_bar_ho))
    elif kind == "cosine":
        s = 0.008
        f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
        beta_ho = np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    alpha_ho = np.concatenate([[1.0], 1.0 - beta_ho])
    alpha_bar_ho = np.cumprod(alpha_ho)
    alpha = np.sqrt(alpha_ho)
    beta = np.sqrt(1.0 - alpha_ho)
    alpha_bar = np.sqrt(alpha_bar_ho)
    beta_bar = np.sqrt(1.0 - alpha_bar_ho)
    for a in (alpha, beta, alpha_bar, beta_bar):
        a.setflags(write=False)
    return Schedule(alpha, beta, alpha_bar, beta_bar)
