"""Data: pure functions of a key (toys) or fixed arrays shipped in a package (digits).

``examples(name, split, ...)`` and ``domain(name)`` pick either by name.
"""

from diffusionlab.data.atoms import ATOMS1D, atoms1d
from diffusionlab.data.digits import digits
from diffusionlab.data.named import DATASET_NAMES, domain, examples
from diffusionlab.data.tokens import digit_tokens, tokens_to_images
from diffusionlab.data.toy2d import TOY2D_NAMES, toy2d

__all__ = ["ATOMS1D", "DATASET_NAMES", "TOY2D_NAMES", "atoms1d", "digit_tokens", "digits", "domain",
           "examples", "tokens_to_images", "toy2d"]
