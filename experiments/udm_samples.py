"""Sample grids of every UDM process on 8x8 digits, beside real test digits (essay 9271)."""

from __future__ import annotations

import dataclasses

import jax

from diffusionlab.cache import checkpoints_beside
from diffusionlab.udm import evaluation, plots

TITLE = "UDM: samples of hot, cold, edit, mask and encoder diffusion on digits"


@dataclasses.dataclass(frozen=True)
class Config:
    recipe: evaluation.Recipe = evaluation.Recipe()
    hot_steps: tuple[int, ...] = (10, 50)  # plus T
    num_grid: int = 48
    num_eval: int = 500
    seed: int = 0  # the same models as udm_quality's first replicate (same recipe and key)

    @classmethod
    def quick(cls) -> Config:
        return cls(recipe=evaluation.Recipe.quick(), hot_steps=(2,), num_grid=16, num_eval=64)


def run(config: Config, out) -> None:
    recipe = config.recipe
    # the models' key as udm_quality derives it, so that both load one training run
    k_models, key = jax.random.split(jax.random.key(config.seed))
    with out.phase("training"):
        models = recipe.models("digits", key=evaluation.replicate_key(k_models, 0, "digits"),
                               directory=checkpoints_beside(out.directory))
    table = evaluation.samplers(recipe, domain="digits")
    with out.phase("evaluation"):
        real = evaluation.reference_data(recipe, domain="digits", num=config.num_eval, key=None)
        real_div = evaluation.diversity(real)
    hot_panels = {"real test digits": real[: config.num_grid]}
    other_panels = {"real test digits": real[: config.num_grid]}
    rows = []
    for i, (name, spec) in enumerate(table.items()):
        model = models[spec.model]
        process = model.process if spec.process is None else spec.process
        step_list = (
            sorted({s for s in config.hot_steps if s < process.T} | {process.T})
            if name.startswith("hot")
            else [process.T]
        )
        for steps in step_list:
            k_source, k_draw = jax.random.split(jax.random.fold_in(key, 1000 * i + steps))
            with out.phase("sampling"):
                source = evaluation.prior_source(
                    spec.model, recipe, domain="digits", num=config.num_eval, key=k_source
                )
                images = evaluation.as_images(
                    evaluation.draw(model, process, source, steps=steps, key=k_draw), recipe
                )
            label = f"{name}, {steps} steps" if name.startswith("hot") else name
            (hot_panels if name.startswith("hot") else other_panels)[label] = images[: config.num_grid]
            with out.phase("evaluation"):
                rows.append(
                    {
                        "sampler": name,
                        "steps": steps,
                        "FD-digits": evaluation.score(images, real, recipe, domain="digits"),
                        "diversity": evaluation.diversity(images),
                        "diversity / real": evaluation.diversity(images) / real_div,
                    }
                )
    out.figure(
        plots.digit_grids(hot_panels, panel_columns=4, suptitle="Hot diffusion: DDPM and DDIM presets"),
        "samples_hot",
        caption="Hot diffusion (one trained ε-model), DDPM (σ_t = β̄_{t-1}β_t/β̄_t) and "
        "DDIM (σ_t = 0) at several numbers of reverse steps, beside real test digits.",
    )
    out.figure(
        plots.digit_grids(
            other_panels, panel_columns=4, suptitle="Cold (blur), edit, mask and encoder diffusion"
        ),
        "samples_other",
        caption="Cold diffusion with blur, naive and improved samplers, with and "
        "without noise; edit and mask diffusion (deterministic and baseline kernels); encoder "
        "diffusion; beside real test digits.",
    )
    out.table(
        rows,
        stem="samples",
        caption=f"FD-digits and diversity (mean pairwise pixel distance) of "
        f"{config.num_eval} samples per sampler; real test digits have diversity {real_div:.3g}.",
    )
    out.metric(real_diversity=real_div, **{f"{r['sampler']}|{r['steps']}": r["FD-digits"] for r in rows})
