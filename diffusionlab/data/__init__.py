"""Data: pure functions of a key (toys) or fixed arrays shipped in a package (digits)."""

from diffusionlab.data.atoms import ATOMS1D, atoms1d
from diffusionlab.data.digits import digits
from diffusionlab.data.tokens import digit_tokens, tokens_to_images
from diffusionlab.data.toy2d import TOY2D_NAMES, toy2d

__all__ = ["ATOMS1D", "TOY2D_NAMES", "atoms1d", "digit_tokens", "digits", "tokens_to_images", "toy2d"]
