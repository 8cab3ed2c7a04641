"""diffusionlab: JAX experiments on generative-diffusion theory (Su Jianlin's kexue.fm essays).

Shared core: ``data``, ``nn``, ``train``, ``solve``, ``metrics``. Science modules (siblings):
``udm``, ``odes``, ``weakform``, ``scorematching``, ``cosent``, ``lm``, ``nbce``, ``sector``.
"""

__version__ = "0.1.0"
