r"""Unified Diffusion Model: one forward/reverse framework for hot, cold, edit, mask and encoder diffusion.

Every process subclasses :class:`Process` (the contract, in :mod:`diffusionlab.udm.base`): a
frozen dataclass pytree with a reparameterised forward map
:math:`x_t=\mathcal F_t(x_0,\varepsilon)`, a loss and a network head, from which ``forward``,
``reverse_step`` and ``loss`` are written once; :func:`sample` is the one reverse sampler for
all of them, and the three kernel families of the theory essay live in
:mod:`diffusionlab.udm.kernels`. A new process is one file: subclass :class:`Process`, decorate
it with :func:`process_dataclass`, and it samples and trains through the generic code.

References: 苏剑林, 生成扩散模型漫谈（十）：统一扩散模型（理论篇）, https://kexue.fm/archives/9262;
生成扩散模型漫谈（十一）：统一扩散模型（应用篇）, https://kexue.fm/archives/9271
"""

from diffusionlab.udm._pytree import process_dataclass
from diffusionlab.udm.base import Process
from diffusionlab.udm.cold import COLD_KERNELS, ColdDiffusion
from diffusionlab.udm.custom import CustomDiffusion
from diffusionlab.udm.degradations import DEGRADATIONS
from diffusionlab.udm.discrete import DISCRETE_KERNELS, DiscreteProcess
from diffusionlab.udm.edit import EDIT_KERNELS, EDIT_PRIOR_LAWS, EditDiffusion, random_replacement_kernel
from diffusionlab.udm.encoder import EncoderDiffusion
from diffusionlab.udm.hot import HotDiffusion
from diffusionlab.udm.kernels import (
    KERNELS,
    baseline_kernel,
    deterministic_kernel,
    gaussian_interpolation_kernel,
    kernel,
)
from diffusionlab.udm.mask import MaskDiffusion
from diffusionlab.udm.oracle import EmpiricalPredictor, empirical_predictor
from diffusionlab.udm.sampler import reverse_times, sample
from diffusionlab.udm.schedule import schedule

__all__ = [
    "COLD_KERNELS",
    "DEGRADATIONS",
    "DISCRETE_KERNELS",
    "EDIT_KERNELS",
    "EDIT_PRIOR_LAWS",
    "KERNELS",
    "ColdDiffusion",
    "CustomDiffusion",
    "DiscreteProcess",
    "EditDiffusion",
    "EmpiricalPredictor",
    "EncoderDiffusion",
    "HotDiffusion",
    "MaskDiffusion",
    "Process",
    "baseline_kernel",
    "deterministic_kernel",
    "empirical_predictor",
    "gaussian_interpolation_kernel",
    "kernel",
    "process_dataclass",
    "random_replacement_kernel",
    "reverse_times",
    "sample",
    "schedule",
]
