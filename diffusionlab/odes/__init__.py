r"""ODE generators: gravity (the Poisson field), the isotropic CDF family, power-law fields,
straight paths (flow matching, rectified flow), the VP probability flow, generation and
likelihood.

Time runs from :math:`t = T` (prior) down to :math:`t = 0` (data) throughout. A velocity is
written state first, ``v(x, t)``, everywhere in this package; it enters
:func:`diffusionlab.solve.solve_ode` (whose vector fields are ``f(t, x)``) through one adapter,
:func:`diffusionlab.odes.generate.time_change`.

References: 苏剑林, 《生成扩散模型漫谈》 (十三) https://kexue.fm/archives/9305,
(十四) https://kexue.fm/archives/9370, (十五) https://kexue.fm/archives/9379,
(十七) https://kexue.fm/archives/9497.
"""

from diffusionlab.odes import (
    batch_target,
    characteristics,
    flows,
    gravity,
    isotropic,
    learned,
    memorisation,
    powerlaw,
    sharded,
    unaugmented,
    vp,
)
from diffusionlab.odes.characteristics import LinearPath, characteristics_velocity
from diffusionlab.odes.flows import (
    path_cfm_loss,
    path_rectified_loss,
    straightness,
    trigonometric_path,
)
from diffusionlab.odes.generate import Generated, generate
from diffusionlab.odes.isotropic import CDF_FAMILY, ExponentialCDF, GaussianCDF, TanhCDF
from diffusionlab.odes.likelihood import Likelihood, bits_per_dim, log_likelihood
from diffusionlab.odes.sharded import sharded_velocity
from diffusionlab.odes.vp import VPSchedule

__all__ = [
    "CDF_FAMILY",
    "ExponentialCDF",
    "GaussianCDF",
    "Generated",
    "Likelihood",
    "LinearPath",
    "TanhCDF",
    "VPSchedule",
    "batch_target",
    "bits_per_dim",
    "characteristics",
    "characteristics_velocity",
    "flows",
    "generate",
    "gravity",
    "isotropic",
    "learned",
    "log_likelihood",
    "memorisation",
    "path_cfm_loss",
    "path_rectified_loss",
    "powerlaw",
    "sharded",
    "sharded_velocity",
    "straightness",
    "trigonometric_path",
    "unaugmented",
    "vp",
]
