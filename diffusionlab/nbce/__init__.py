"""NBCE: naive-Bayes context extension of a language model, at decoding time only, and the
rival training-free rules that combine independently encoded contexts
(:func:`combine_generate`: PCW, the parallel ensemble, APE, the exact block merge).

Su, "NBCE: extending an LLM's context length with naive Bayes", https://kexue.fm/archives/9617;
"Supplementary notes and analysis of NBCE", https://kexue.fm/archives/9632.
"""

from diffusionlab.nbce.chunking import split_into_chunks
from diffusionlab.nbce.combine import RULES, combine_generate, ensemble_step
from diffusionlab.nbce.generate import (
    NBCEOutput,
    nbce_decode,
    nbce_generate,
    nbce_prefill,
    nbce_prompts,
)
from diffusionlab.nbce.parallel import merge_attention
from diffusionlab.nbce.step import POOLINGS, nbce_step, top_p_truncate, truncated_entropy

__all__ = [
    "NBCEOutput", "POOLINGS", "RULES", "combine_generate", "ensemble_step", "merge_attention",
    "nbce_decode", "nbce_generate", "nbce_prefill", "nbce_prompts",
    "nbce_step", "split_into_chunks", "top_p_truncate", "truncated_entropy",
]
