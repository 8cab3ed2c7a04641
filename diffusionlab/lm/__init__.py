"""A small decoder-only transformer LM (flax NNX) with RoPE, a KV cache and a pure ``apply``.

An optional token shift on the embeddings (:class:`~diffusionlab.lm.shift.TokenShift`) lets
the two-block model learn key-value recall over new keys in a few thousand CPU steps.

Trained on a synthetic multi-document QA corpus, it is the model NBCE
(:mod:`diffusionlab.nbce`) extends beyond its trained length.
"""

from diffusionlab.lm.data import QACorpus, QAExample, training_set
from diffusionlab.lm.decode import generate, left_pad, uncached_generate
from diffusionlab.lm.model import (
    DecodeCache,
    LanguageModel,
    LMApply,
    LMConfig,
    init_decode_cache,
    pure,
)
from diffusionlab.lm.shift import TokenShift
from diffusionlab.lm.tokenizer import ByteTokenizer
from diffusionlab.lm.train import (
    LMTrainConfig,
    checkpoint_name,
    lm_loss,
    load_lm,
    save_lm,
    shared_checkpoints,
    train_lm,
    train_or_load,
)

__all__ = [
    "ByteTokenizer", "DecodeCache", "LMApply", "LMConfig", "LMTrainConfig", "LanguageModel",
    "QACorpus", "QAExample", "TokenShift", "checkpoint_name", "generate", "init_decode_cache", "left_pad",
    "lm_loss", "load_lm", "pure", "save_lm", "shared_checkpoints", "train_lm", "train_or_load",
    "training_set", "uncached_generate",
]
