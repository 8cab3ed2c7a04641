r"""Test-function (weak-form) verification of continuity and Fokker–Planck equations.

For :math:`dx=f_t\,dt+g_t\,dw` and every smooth test function :math:`\phi`,
:math:`\frac{d}{dt}\mathbb E[\phi(x_t)]=\mathbb E[f_t\cdot\nabla\phi+\tfrac12g_t^2\Delta\phi]`;
integrating by parts gives :math:`\partial_tp_t=-\nabla\cdot(p_tf_t)+\tfrac12g_t^2\Delta p_t`.

* :func:`verify_fokker_planck`, :func:`verify_continuity`: Monte Carlo weak-form check from a
  sampler of :math:`p_t` or an analytic log-density; returns a :class:`WeakFormReport`.
* :func:`fokker_planck_residual`, :func:`continuity_residual`, :func:`strong_form_residuals`:
  the pointwise residual for analytic densities.
* :class:`TestFunctions`, :func:`default_test_functions`: Gaussian bumps and random Fourier
  features.
* :func:`exact_laplacian`, :func:`hutchinson_laplacian`: the second-order term by autodiff.
* :class:`DiffusionMatrix`: optional state-dependent matrix noise, Itô form.
* :class:`OrnsteinUhlenbeck`, :class:`GeometricBrownianMotion`, :class:`VPSDE`,
  :class:`VESDE`, :class:`AffinePathSDE`: reference SDEs with closed-form marginals.
* ``diffusionlab.weakform.cases`` (imported on its own: it checks other science modules) is the
  catalogue of correct and deliberately wrong triples; ``diffusionlab.weakform.plots`` draws
  reports.

Reference: 苏剑林, 《测试函数法推导连续性方程和Fokker-Planck方程》, https://kexue.fm/archives/9461
"""

from diffusionlab.weakform.diffusion import DiffusionMatrix
from diffusionlab.weakform.generator import generator
from diffusionlab.weakform.laplacian import exact_laplacian, hutchinson_laplacian
from diffusionlab.weakform.reference import (
    VESDE,
    VPSDE,
    AffinePathSDE,
    GeometricBrownianMotion,
    OrnsteinUhlenbeck,
)
from diffusionlab.weakform.report import WeakFormReport
from diffusionlab.weakform.strong import (
    continuity_residual,
    fokker_planck_residual,
    strong_form_residuals,
)
from diffusionlab.weakform.test_functions import TestFunctions, default_test_functions
from diffusionlab.weakform.verifier import verify_continuity, verify_fokker_planck

__all__ = [
    "AffinePathSDE",
    "DiffusionMatrix",
    "GeometricBrownianMotion",
    "OrnsteinUhlenbeck",
    "TestFunctions",
    "VESDE",
    "VPSDE",
    "WeakFormReport",
    "continuity_residual",
    "default_test_functions",
    "exact_laplacian",
    "fokker_planck_residual",
    "generator",
    "hutchinson_laplacian",
    "strong_form_residuals",
    "verify_continuity",
    "verify_fokker_planck",
]
