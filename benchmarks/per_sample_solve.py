"""Per-sample against shared adaptive step control on the exact-field samplers.

``solve_ode(batch_mode="per_sample")`` vmaps the adaptive solve over the batch (one PID
controller per sample); the default ``"shared"`` integrates the batch as one state with one
step size. The baselines are that shared mode and the fixed Heun steps the experiments use
(``experiments/memorisation.py``: 1000 steps in log t; ``experiments/gravity_2d.py``: 500).

The problems are the experiments' exact empirical fields, integrated in log t from T = 40
(``generate(time="log")``'s change of variable, through ``solve_ode`` directly):

* ``memorisation gravity``: :func:`diffusionlab.odes.gravity.velocity` of 100 swiss-roll
  points down to t = 1e-4, prior :func:`gravity.sample_prior` around their centroid;
* ``memorisation tanh``: :func:`diffusionlab.odes.isotropic.marginal_velocity` of the tanh
  member of the CDF family on the same points, prior :func:`isotropic.sample_prior`;
* ``gravity_2d``: the gravity field of 2048 ``8gaussians`` points down to t = 1e-3.

For each problem and batch size: NFE (batched count, and per-sample mean and max), the
compile time and the best run time apart, and the error of each sample's end point against
a float64 per-sample reference at rtol = atol = 1e-9 (Euclidean distance: mean, median,
max, and the fraction above the memorisation experiment's hit tolerance 1e-2). A solve that
exceeds its step budget is recorded as failed.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import best_time
from diffusionlab import data
from diffusionlab.odes import gravity, isotropic
from diffusionlab.odes.generate import time_change
from diffusionlab.solve import solve_ode

T = 40.0
HIT_TOLERANCE = 1e-2
REFERENCE = dict(batch_mode="per_sample", rtol=1e-9, atol=1e-9, max_steps=200_000)
TANH = isotropic.CDF_FAMILY[0]


def _gravity(x, t, points):
    return gravity.velocity(x, t, points)


def _tanh(x, t, points):
    return isotropic.marginal_velocity(TANH, x, t, points)


PROBLEMS = {
    # name: (velocity, dataset, number of points, t_end, Heun steps of the experiment, prior)
    "memorisation gravity": (_gravity, "swiss_roll", 100, 1e-4, 1000, "gravity"),
    "memorisation tanh": (_tanh, "swiss_roll", 100, 1e-4, 1000, "tanh"),
    "gravity_2d": (_gravity, "8gaussians", 2048, 1e-3, 500, "gravity"),
}


def _solver(velocity, t_end, options):
    @jax.jit
    def solve(x_T, points):
        field = time_change(jax.tree_util.Partial(velocity, points=points), "log")
        sol = solve_ode(field, x_T, jnp.log(T), jnp.log(t_end), **options)
        counts = (jnp.full(x_T.shape[:1], sol.nfe) if sol.nfe_per_sample is None
                  else sol.nfe_per_sample)
        return sol.x, sol.nfe, counts
    return solve


def _measure(velocity, t_end, options, x_T, points, repeats):
    start = time.perf_counter()
    compiled = _solver(velocity, t_end, options).lower(x_T, points).compile()
    compile_seconds = time.perf_counter() - start
    try:
        x, nfe, counts = jax.block_until_ready(compiled(x_T, points))
    except Exception as error:  # the step budget is checked at run time
        return {"failed": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}",
                "compile_seconds": compile_seconds}, None
    seconds = best_time(lambda: compiled(x_T, points), repeats=repeats, warmup=0)
    counts = np.asarray(counts)
    return {"nfe": int(nfe), "nfe_mean": float(counts.mean()), "nfe_max": int(counts.max()),
            "compile_seconds": compile_seconds, "seconds": seconds}, np.asarray(x, np.float64)


def _errors(x, ref) -> dict:
    distance = np.linalg.norm(x - ref, axis=1)
    return {"error_mean": float(distance.mean()), "error_median": float(np.median(distance)),
            "error_max": float(distance.max()),
            "fraction_error_above_hit_tolerance": float(np.mean(distance > HIT_TOLERANCE))}


def _ratios(methods: dict) -> dict:
    """Run-time ratios of the two baselines over the per-sample mode, and its mean NFE over the
    shared mode's, for one case (the ones whose solves succeeded)."""
    per_sample = methods["per_sample tsit5 1e-5"]
    shared = methods["shared tsit5 1e-5"]
    heun = next(v for k, v in methods.items() if k.startswith("fixed heun"))
    out = {}
    if "seconds" in per_sample:
        if "seconds" in shared:
            out["shared_over_per_sample_time_ratio"] = shared["seconds"] / per_sample["seconds"]
            out["per_sample_over_shared_nfe_ratio"] = per_sample["nfe_mean"] / shared["nfe"]
        if "seconds" in heun:
            out["heun_over_per_sample_time_ratio"] = heun["seconds"] / per_sample["seconds"]
    return out


def run(quick: bool = False) -> dict:
    batch_sizes = (16,) if quick else (256, 1024)
    repeats = 1 if quick else 2
    # The quick size (the suite's smoke run) solves one problem: the float64 reference at 1e-9
    # dominates the time.
    problems = {"memorisation tanh": PROBLEMS["memorisation tanh"]} if quick else PROBLEMS
    cases = []
    for name, (velocity, dataset, num_points, t_end, heun_steps, prior) in problems.items():
        k_data, k_prior = jax.random.split(jax.random.key(0))
        points = data.toy2d(dataset, num_points, key=k_data)
        centre = points.mean(0, keepdims=True)
        methods = {
            f"fixed heun {heun_steps}": dict(solver="heun", steps=heun_steps),
            "shared tsit5 1e-5": dict(batch_mode="shared"),
            "per_sample tsit5 1e-5": dict(batch_mode="per_sample"),
        }
        for batch in batch_sizes:
            if prior == "gravity":
                x_T = gravity.sample_prior(batch, 2, T, key=k_prior) + centre
            else:
                x_T = isotropic.sample_prior(TANH, batch, 2, T, key=k_prior, centre=centre)
            with jax.enable_x64(True):
                reference, ref_x = _measure(velocity, t_end, REFERENCE,
                                            x_T.astype(jnp.float64),
                                            points.astype(jnp.float64), 1)
            case = {"problem": name, "batch": batch, "num_points": num_points,
                    "t_end": t_end, "reference": {"options": "float64 per_sample tsit5 "
                                                  "rtol=atol=1e-9", **reference}, "methods": {}}
            for label, options in methods.items():
                result, x = _measure(velocity, t_end, options, x_T, points, repeats)
                if x is not None and ref_x is not None:
                    result.update(_errors(x, ref_x))
                case["methods"][label] = result
                print(f"[per_sample_solve] {name} B={batch} {label}: {result}", flush=True)
            cases.append(case)
    ratios = _ratios(cases[-1]["methods"])
    return {
        **ratios,
        "ratios_at": f"{cases[-1]['problem']}, B = {cases[-1]['batch']}",
        "baseline": "solve_ode shared mode (one adaptive step for the batch) and the fixed "
                    "Heun steps of experiments/memorisation.py and gravity_2d.py, same run",
        "tolerances": "tsit5 rtol = atol = 1e-5 (solve_ode's default), max_steps 4096",
        "hit_tolerance": HIT_TOLERANCE,
        "cases": cases,
        "device": jax.devices()[0].platform,
    }
