r"""Score matching = conditional score matching, up to a constant independent of :math:`\theta`.

.. math:: \mathcal L_{CSM}(\theta)-\mathcal L_{SM}(\theta)=\mathbb E_{x_t}\Big[
   \mathbb E_{x_0\mid x_t}\|\nabla\log p_t(x_t\mid x_0)\|^2-\|\nabla\log p_t(x_t)\|^2\Big]=C_t .

* Losses (per example): :func:`explicit_score_matching_loss`,
  :func:`conditional_score_matching_loss`, :func:`implicit_score_matching_loss` (exact trace
  or Hutchinson), :func:`sliced_score_matching_loss`.
* Exact scores: :class:`GaussianMixture` (``perturb``, ``score``), :func:`conditional_score`,
  and the closed-form gap :func:`gaussian_score_matching_gap`.
* :func:`compare_losses`, :func:`loss_gradients`, :func:`gradient_agreement`: SM vs CSM
  (values, gap, gradients) on the same pairs.
* :func:`conditional_score_matching_objective`: the CSM loss on fresh perturbations, for
  :func:`diffusionlab.train.fit`.
* The biased batch-ratio estimator: :func:`batch_ratio_score`, :func:`batch_ratio_score_bias`.

Reference: 苏剑林, 《生成扩散模型漫谈（十八）：得分匹配 = 条件得分匹配》, https://kexue.fm/archives/9509
"""

from diffusionlab.scorematching.batch_ratio import batch_ratio_score, batch_ratio_score_bias
from diffusionlab.scorematching.compare import (
    LossComparison,
    compare_losses,
    gradient_agreement,
    loss_gradients,
)
from diffusionlab.scorematching.gaussian import (
    GaussianMixture,
    conditional_score,
    gaussian_score_matching_gap,
)
from diffusionlab.scorematching.losses import (
    conditional_score_matching_loss,
    explicit_score_matching_loss,
    implicit_score_matching_loss,
    sliced_score_matching_loss,
)
from diffusionlab.scorematching.training import conditional_score_matching_objective

__all__ = [
    "GaussianMixture",
    "LossComparison",
    "batch_ratio_score",
    "batch_ratio_score_bias",
    "compare_losses",
    "conditional_score",
    "conditional_score_matching_loss",
    "conditional_score_matching_objective",
    "explicit_score_matching_loss",
    "gaussian_score_matching_gap",
    "gradient_agreement",
    "implicit_score_matching_loss",
    "loss_gradients",
    "sliced_score_matching_loss",
]
