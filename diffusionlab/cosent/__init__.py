"""CoSENT: a ranking loss on pair similarities, for bi-encoders and cross-encoders.

After 苏剑林's series: "CoSENT（一）：比Sentence-BERT更有效的句向量方案"
(https://kexue.fm/archives/8847), "CoSENT（二）：特征式匹配与交互式匹配有多大差距？"
(https://kexue.fm/archives/8860) and "CoSENT（三）：作为交互式相似度的损失函数"
(https://kexue.fm/archives/9341).

* Loss: :func:`cosent_loss` (the faster of its dense $O(B^2)$ and sorted $O(B\\log B)$
  forms at the batch size), :func:`cosent_loss_sorted`, :func:`cosent_loss_sharded` (every
  pair of a batch split over devices);
  AnglE (:func:`angle_loss`, :func:`angle_similarity`), CoSENT on a complex-space angle score.
* Baselines: :func:`sbert_softmax_loss`, :func:`cosine_mse_loss`, :func:`binary_cross_entropy_loss`.
* Models: :class:`BiEncoder`, :class:`CrossEncoder` on a shared transformer trunk;
  :class:`Tokenizer` built from the training text.
* Data: :func:`synthetic_task`, :func:`wordnet_task`, :func:`load_pair_task` (essay TSVs);
  :func:`human_rated` / :func:`human_rated_task` (Lee 2005, SimLex-999, WordSim-353).
* Evaluation: :func:`spearman`, :func:`search_threshold`, :func:`accuracy`.
* Training: :func:`train_pair_models` trains every (loss, seed) model of a comparison at once.
"""

from diffusionlab.cosent.angle import angle_loss, angle_similarity
from diffusionlab.cosent.baselines import (
    binary_cross_entropy_loss,
    cosine_mse_loss,
    sbert_features,
    sbert_softmax_loss,
)
from diffusionlab.cosent.evaluate import accuracy, search_threshold, spearman
from diffusionlab.cosent.human_rated import HUMAN_RATED, HumanRated, human_rated, human_rated_task
from diffusionlab.cosent.loss import cosent_loss, cosent_loss_sorted
from diffusionlab.cosent.models import BiEncoder, CrossEncoder, EncoderConfig, cosine_similarity
from diffusionlab.cosent.sharded import cosent_loss_sharded
from diffusionlab.cosent.synthetic import SYNTHETIC_TASKS, synthetic_task
from diffusionlab.cosent.tasks import PairSplit, PairTask
from diffusionlab.cosent.tokenizer import Tokenizer
from diffusionlab.cosent.train import (
    BI_ENCODER_LOSSES,
    CROSS_ENCODER_LOSSES,
    PairArrays,
    TrainResult,
    TrainSettings,
    encode_task,
    train_pair_models,
)
from diffusionlab.cosent.tsv import load_pair_task, load_pair_tsv
from diffusionlab.cosent.wordnet import wordnet_available, wordnet_task

__all__ = [
    "BI_ENCODER_LOSSES",
    "CROSS_ENCODER_LOSSES",
    "HUMAN_RATED",
    "SYNTHETIC_TASKS",
    "BiEncoder",
    "CrossEncoder",
    "EncoderConfig",
    "HumanRated",
    "PairArrays",
    "PairSplit",
    "PairTask",
    "Tokenizer",
    "TrainResult",
    "TrainSettings",
    "accuracy",
    "angle_loss",
    "angle_similarity",
    "binary_cross_entropy_loss",
    "cosent_loss",
    "cosent_loss_sharded",
    "cosent_loss_sorted",
    "cosine_mse_loss",
    "cosine_similarity",
    "encode_task",
    "human_rated",
    "human_rated_task",
    "load_pair_task",
    "load_pair_tsv",
    "sbert_features",
    "sbert_softmax_loss",
    "search_threshold",
    "spearman",
    "synthetic_task",
    "train_pair_models",
    "wordnet_available",
    "wordnet_task",
]
