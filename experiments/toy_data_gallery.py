"""Every dataset in ``diffusionlab.data`` drawn: the 2-D toys, the 1-D atoms, digits and tokens."""

from __future__ import annotations

import dataclasses

import jax
import matplotlib.pyplot as plt
import numpy as np

from diffusionlab import data

TITLE = "Gallery of every dataset (2-D toys, 1-D atoms, 8×8 digits and their tokens)"


@dataclasses.dataclass(frozen=True)
class Config:
    num_points: int = 20000
    num_digits: int = 20
    levels: int = 8
    seed: int = 0

    @classmethod
    def quick(cls) -> Config:
        return cls(num_points=2000, num_digits=10)


def _toy_panels(config: Config, key, out):
    fig, axes = plt.subplots(1, len(data.TOY2D_NAMES), figsize=(3.2 * len(data.TOY2D_NAMES), 3.4),
                             layout="constrained")
    rows = []
    for ax, name, k in zip(axes, data.TOY2D_NAMES, jax.random.split(key, len(data.TOY2D_NAMES)),
                                  strict=True):
        with out.phase("sampling"):
            x = np.asarray(data.toy2d(name, config.num_points, key=k))
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3, color="tab:blue", rasterized=True)
        ax.set(title=name, xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xlabel="$x_1$", ylabel="$x_2$")
        with out.phase("evaluation"):
            rows.append({"dataset": name, "points": len(x), "mean x1": x[:, 0].mean(),
                         "mean x2": x[:, 1].mean(), "std x1": x[:, 0].std(),
                         "std x2": x[:, 1].std()})
    fig.suptitle(f"2-D toy datasets ({config.num_points} points each)")
    return fig, rows


def _image_grid(images: np.ndarray, labels, title: str):
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(0.9 * n, 1.3))
    for ax, img, label in zip(np.atleast_1d(axes), images, labels, strict=True):
        ax.imshow(img[..., 0], cmap="gray_r", vmin=-1, vmax=1)
        ax.set_title(str(label), fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def run(config: Config, out) -> None:
    key = jax.random.key(config.seed)
    fig, rows = _toy_panels(config, key, out)
    out.figure(fig, "toys_2d", caption="The five 2-D toys, each scaled to roughly unit spread.")

    with out.phase("sampling"):
        atoms = np.asarray(data.atoms1d(config.num_points, key=key))[:, 0]
    fig, ax = plt.subplots(figsize=(5, 3))
    locations = [a for a, _ in data.ATOMS1D]
    with out.phase("evaluation"):
        counts = [np.mean(np.isclose(atoms, a)) for a in locations]
    ax.bar(locations, counts, width=0.08, label="sampled fraction")
    ax.scatter(locations, [w for _, w in data.ATOMS1D], color="k", marker="_", s=400, label="weight")
    ax.set(xlabel="x", ylabel="probability", title="1-D atoms of the ODE essay's demo", xlim=(0, 2))
    ax.legend()
    out.figure(fig, "atoms_1d", caption="Atoms 0.5 (weight ½), 1.2 and 1.7 (weight ¼ each).")

    with out.phase("sampling"):  # loading the digits and their tokens counts as drawing
        images, labels = data.digits("test")
    n = config.num_digits
    out.figure(_image_grid(images[:n], labels[:n], "8×8 digits (test split), in [-1, 1]"), "digits")
    with out.phase("sampling"):
        tokens, _ = data.digit_tokens("test", levels=config.levels)
        view = data.tokens_to_images(tokens[:n], levels=config.levels)
    out.figure(_image_grid(view, labels[:n], f"the same digits as 64 tokens, {config.levels} grey levels"),
               "digit_tokens")

    with out.phase("sampling"):
        train, _ = data.digits("train")
    with out.phase("evaluation"):
        rows.append({"dataset": "digits (train/test)", "points": f"{len(train)}/{len(images)}",
                     "mean x1": float(train.mean()), "mean x2": "", "std x1": float(train.std()),
                     "std x2": ""})
    out.table(rows, stem="datasets", caption="Sizes and moments of every dataset drawn above.")
    out.metric(num_train_digits=len(train), num_test_digits=len(images), levels=config.levels)
