r"""Synthetic graded-similarity tasks whose structure mirrors the essays' datasets.

Every sentence renders a *meaning* (an event: agent, verb, patient, the agent's adjective and
a place) with free surface choices: synonyms, active or passive voice, filler words. Three
tasks stand for the essays' five datasets:

* ``"sts"``: graded 0-5 like STS-B; the label counts the event slots the two meanings share.
* ``"paraphrase"``: binary like ATEC/BQ/LCQMC. Positives are independent renderings of one
  meaning; negatives are *hard*: one slot changed, the other words kept, so their lexical
  overlap is higher than the positives'. This is what part I says defeats absolute cosine
  targets.
* ``"adversarial"``: binary like PAWSX. Negatives swap agent and patient and keep every word
  ("the old dog chases the cat" / "the old cat chases the dog"); positives are paraphrases in
  other synonyms. Word overlap is then *higher* for the negatives, and only word order
  separates the classes. This is where part II expects the cross-encoder to win.

Reference: 苏剑林, "CoSENT（二）：特征式匹配与交互式匹配有多大差距？", https://kexue.fm/archives/8860
"""

from __future__ import annotations

import numpy as np

from diffusionlab import _checks
from diffusionlab.cosent.tasks import PairSplit, PairTask

__all__ = ["SYNTHETIC_TASKS", "synthetic_task"]

SYNTHETIC_TASKS = ("sts", "paraphrase", "adversarial")

# Each concept has surface synonyms; the first is the canonical form.
_ENTITIES = (
    ("dog", "hound", "puppy"), ("cat", "kitten", "feline"), ("man", "guy", "gentleman"),
    ("woman", "lady"), ("child", "kid", "youngster"), ("teacher", "tutor", "instructor"),
    ("doctor", "physician", "medic"), ("farmer", "grower"), ("horse", "pony", "stallion"),
    ("bird", "sparrow"), ("soldier", "trooper"), ("student", "pupil", "learner"),
    ("king", "monarch", "ruler"), ("thief", "robber", "burglar"), ("baker", "pastry chef"),
    ("police officer", "cop", "officer"), ("nurse", "caregiver"), ("wolf", "coyote"),
    ("lawyer", "attorney", "counsel"), ("pilot", "aviator"),
)
# (active synonyms, passive participle synonyms), aligned.
_VERBS = (
    (("chases", "pursues", "runs after"), ("chased", "pursued", "run after")),
    (("sees", "spots", "notices"), ("seen", "spotted", "noticed")),
    (("helps", "assists", "aids"), ("helped", "assisted", "aided")),
    (("calls", "phones", "rings"), ("called", "phoned", "rung")),
    (("follows", "trails", "tracks"), ("followed", "trailed", "tracked")),
    (("pays", "rewards"), ("paid", "rewarded")),
    (("teaches", "instructs", "trains"), ("taught", "instructed", "trained")),
    (("blames", "accuses"), ("blamed", "accused")),
    (("hugs", "embraces"), ("hugged", "embraced")),
    (("warns", "alerts", "cautions"), ("warned", "alerted", "cautioned")),
    (("visits", "drops in on"), ("visited", "dropped in on")),
    (("thanks", "praises"), ("thanked", "praised")),
)
_ADJECTIVES = (
    ("old", "elderly", "aged"), ("young", "youthful"), ("tall", "towering"),
    ("happy", "cheerful", "glad"), ("angry", "furious", "mad"), ("tired", "weary", "sleepy"),
    ("small", "little", "tiny"), ("brave", "bold", "fearless"), ("quiet", "silent"),
    ("rich", "wealthy"),
)
_PLACES = (
    ("in the park", "at the park"), ("near the river", "by the river"),
    ("in the city", "downtown"), ("at the station", "at the train station"),
    ("in the garden", "in the yard"), ("at school", "at the school"),
    ("on the beach", "at the seaside"), ("in the forest", "in the woods"),
    ("at the market", "at the bazaar"), ("on the farm", "at the farm"),
)
_FILLERS = ("well", "honestly", "today", "again", "apparently", "actually", "really",
            "it seems", "as usual", "once more")

_SLOTS = 5  # agent, verb, patient, adjective, place


def _sample_meanings(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 5)`` int meanings; agent and patient differ."""
    agent = rng.integers(len(_ENTITIES), size=n)
    patient = (agent + rng.integers(1, len(_ENTITIES), size=n)) % len(_ENTITIES)
    return np.stack([agent, rng.integers(len(_VERBS), size=n), patient,
                     rng.integers(len(_ADJECTIVES), size=n),
                     rng.integers(len(_PLACES), size=n)], axis=1)


def _resample_slot(rng, meaning, slot):
    """A copy of ``meaning`` with ``slot`` changed to a different value (roles kept distinct)."""
    out = meaning.copy()
    sizes = (len(_ENTITIES), len(_VERBS), len(_ENTITIES), len(_ADJECTIVES), len(_PLACES))
    while True:
        out[slot] = (meaning[slot] + rng.integers(1, sizes[slot])) % sizes[slot]
        if out[0] != out[2]:
            return out


def _choose(rng, options, pick):
    return options[pick % len(options)] if pick is not None else options[rng.integers(len(options))]


def _render(rng, meaning, *, passive, picks=None, fillers=True) -> str:
    """One sentence for ``meaning``; ``picks`` fixes the synonym choices (for hard negatives)."""
    agent, verb, patient, adjective, place = (int(m) for m in meaning)
    picks = picks if picks is not None else rng.integers(0, 6, size=5)
    adj = _choose(rng, _ADJECTIVES[adjective], picks[3])
    a = f"the {adj} {_choose(rng, _ENTITIES[agent], picks[0])}"
    p = f"the {_choose(rng, _ENTITIES[patient], picks[2])}"
    where = _choose(rng, _PLACES[place], picks[4])
    if passive:
        words = f"{p} is {_choose(rng, _VERBS[verb][1], picks[1])} by {a} {where}"
    else:
        words = f"{a} {_choose(rng, _VERBS[verb][0], picks[1])} {p} {where}"
    if fillers and rng.random() < 0.5:
        filler = _FILLERS[rng.integers(len(_FILLERS))]
        words = f"{filler} {words}" if rng.random() < 0.5 else f"{words} {filler}"
    return words


def _sts_rows(rng, n):
    rows = []
    for m in _sample_meanings(rng, n):
        shared = int(rng.integers(0, _SLOTS + 1))
        other = m.copy()
        for slot in rng.permutation(_SLOTS)[: _SLOTS - shared]:
            other = _resample_slot(rng, other, slot)
        label = int(np.sum(other == m))
        rows.append((_render(rng, m, passive=rng.random() < 0.3),
                     _render(rng, other, passive=rng.random() < 0.3), float(label)))
    return rows


def _paraphrase_rows(rng, n):
    rows = []
    for m in _sample_meanings(rng, n):
        passive = bool(rng.random() < 0.3)
        if rng.random() < 0.5:
            rows.append((_render(rng, m, passive=passive), _render(rng, m, passive=passive), 1.0))
        else:
            picks = rng.integers(0, 6, size=5)
            other = _resample_slot(rng, m, int(rng.integers(_SLOTS)))
            rows.append((_render(rng, m, passive=passive, picks=picks),
                         _render(rng, other, passive=passive, picks=picks), 0.0))
    return rows


def _adversarial_rows(rng, n):
    rows = []
    for m in _sample_meanings(rng, n):
        picks = rng.integers(0, 6, size=5)
        passive = bool(rng.random() < 0.5)
        if rng.random() < 0.5:
            # A paraphrase: the same event in the same voice, other synonyms.
            other, other_picks, label = m, rng.integers(0, 6, size=5), 1.0
        else:
            # Agent and patient swapped, every word kept: a bag-of-words twin.
            other, other_picks, label = m.copy(), picks.copy(), 0.0
            other[[0, 2]], other_picks[[0, 2]] = m[[2, 0]], picks[[2, 0]]
        rows.append((_render(rng, m, passive=passive, picks=picks, fillers=False),
                     _render(rng, other, passive=passive, picks=other_picks, fillers=False),
                     label))
    return rows


_BUILDERS = {
    "sts": (_sts_rows, 2.5, 5.0, "graded 0-5: shared event slots (STS-B-like)"),
    "paraphrase": (_paraphrase_rows, 0.5, 1.0,
                   "binary paraphrase with hard one-slot negatives (LCQMC/BQ/ATEC-like)"),
    "adversarial": (_adversarial_rows, 0.5, 1.0,
                    "binary, negatives swap agent and patient (PAWSX-like)"),
}


def synthetic_task(name: str, *, num_train: int = 2000, num_valid: int = 500,
                   num_test: int = 500, seed: int = 0) -> PairTask:
    """Generates one synthetic task with independent train/valid/test splits.

    Args:
      name: one of :data:`SYNTHETIC_TASKS`.
      num_train, num_valid, num_test: split sizes (each >= 1).
      seed: the NumPy seed of the text generator (the data are host-side strings).

    Returns:
      A :class:`PairTask`.

    Raises:
      ValueError: unknown ``name`` or a split size < 1.
    """
    if not isinstance(name, str) or name not in _BUILDERS:
        raise (ValueError if isinstance(name, str) else TypeError)(
            f"name must name a synthetic task; unknown synthetic task {name!r}; valid names: "
            f"{SYNTHETIC_TASKS}")
    for arg, value in (("num_train", num_train), ("num_valid", num_valid),
                       ("num_test", num_test)):
        # Host-side strings of ~100 bytes per pair: cap the sizes by this machine's memory.
        _checks.check_int(value, arg, low=1)
        _checks.check_fits_memory(arg, 400.0 * value, f"{value} sentence pairs")
    seed = _checks.check_int(seed, "seed", low=0, high=2**63)
    build, positive_above, max_label, description = _BUILDERS[name]
    rng = np.random.default_rng([seed, SYNTHETIC_TASKS.index(name)])
    splits = [PairSplit.from_rows(build(rng, n)) for n in (num_train, num_valid, num_test)]
    return PairTask(name, *splits, positive_above=positive_above, max_label=max_label,
                    description=description)
