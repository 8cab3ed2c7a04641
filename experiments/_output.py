"""Where an experiment puts what it measured: ``results/<name>/``.

Every experiment writes the same three kinds of artefact, through one object:

* PNG figures (``out.figure``),
* Markdown tables (``out.table``),
* ``metrics.json`` with the scalar metrics, the configuration, the essay's claims set next
  to the measured values (``out.claim``), and the wall time split by phase
  (``with out.phase("training"): ...``).

``experiments.report`` later gathers every ``results/<name>/`` into ``results/REPORT.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _now() -> float:
    """The clock of the phase timer (seconds, monotonic)."""
    return time.perf_counter()


def _jsonable(value: Any) -> Any:
    """Converts numpy/jax scalars and arrays into plain JSON values (NaN becomes null)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(np.asarray(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def format_cell(value: Any) -> str:
    """Formats one table cell: floats with 4 significant digits, others with ``str``."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Renders a list of row dicts as a GitHub-flavoured Markdown table."""
    if not rows:
        return "_(no rows)_\n"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [format_cell(row.get(c, "")).replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


VERDICTS = ("holds", "fails", "undecided")

PHASES = ("training", "sampling", "evaluation")
"""The phases ``Output.phase`` times; the rest of a run's wall time is ``"other"``."""


def interval_text(claim: Mapping[str, Any]) -> str:
    """``estimate [low, high]`` of a recorded claim (the interval omitted where undefined)."""
    estimate, low, high = (claim.get(k) for k in ("estimate", "low", "high"))
    if estimate is None:
        return "—"
    text = format_cell(float(estimate))
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        text += f" [{format_cell(float(low))}, {format_cell(float(high))}]"
    return text


def claims_table(claims: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown table of recorded claims: evidence, rule and verdict in each row."""
    rows = [
        {
            "claim": c["claim"],
            "essay": format_cell(c["expected"]),
            "estimate [interval]": interval_text(c),
            "n": c.get("n", ""),
            "rule": c.get("rule", ""),
            "verdict": f"**{c['verdict']}**",
            "why": c.get("reason", ""),
            "measured": "" if c.get("measured") is None else format_cell(c["measured"]),
            "source": c["source"],
        }
        for c in claims
    ]
    return markdown_table(rows)


@dataclasses.dataclass
class Output:
    """Collects one experiment's artefacts in ``directory`` and writes them on ``finish``.

    Attributes:
      name: the experiment's name (its module name in ``experiments/``).
      directory: ``results/<name>``; created on construction.
      quick: whether the run used ``Config.quick()``.
    """

    name: str
    directory: pathlib.Path
    quick: bool = False
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    claims: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    figures: list[dict[str, str]] = dataclasses.field(default_factory=list)
    tables: list[dict[str, str]] = dataclasses.field(default_factory=list)
    _start: float = dataclasses.field(default_factory=lambda: _now())
    _phase_seconds: dict[str, float] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    _open_phases: list[list] = dataclasses.field(default_factory=list)  # [name, since]

    def __post_init__(self):
        self.directory = pathlib.Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def figure(self, fig, stem: str, *, caption: str = "") -> pathlib.Path:
        """Saves a matplotlib figure as ``<stem>.png`` and closes it."""
        import matplotlib.pyplot as plt

        path = self.directory / f"{stem}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        self.figures.append({"file": path.name, "caption": caption})
        return path

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        stem: str = "table",
        columns: Sequence[str] | None = None,
        caption: str = "",
    ) -> pathlib.Path:
        """Writes ``<stem>.md`` (a Markdown table) and keeps the rows for ``metrics.json``."""
        path = self.directory / f"{stem}.md"
        text = (f"{caption}\n\n" if caption else "") + markdown_table(rows, columns)
        path.write_text(text)
        self.tables.append({"file": path.name, "caption": caption})
        self.metrics.setdefault("tables", {})[stem] = _jsonable(list(rows))
        return path

    def metric(self, **values: Any) -> None:
        """Records scalar (or small array) metrics."""
        self.metrics.update(_jsonable(values))

    def claim(
        self,
        claim: str,
        *,
        source: str,
        expected: Any,
        verdict: Any,
        measured: Any = None,
        previous: Any = None,
    ) -> None:
        """Sets an essay's claim next to what we measured, with a decided verdict.

        Args:
          claim: the statement, in a few words.
          source: where it is made (essay title and URL, or section of a brief).
          expected: what the essay says (a value or a phrase).
          verdict: a :class:`diffusionlab.stats.Verdict` from ``compare``, ``equivalent``,
            ``growth_exponent``, ``exceeds``, ``within``, ``all_of`` or ``undecided``: the
            estimate, its interval over the replicates, the rule and the three-way verdict.
          measured: optional context for the reader (other figures behind the estimate).
          previous: what the experiment's earlier boolean rule gave on these same numbers
            (True/False/None). Kept in ``metrics.json`` only, so that a change of verdict
            between the old rule and the decided one can be listed; never shown as a verdict.

        Raises:
          TypeError: if ``verdict`` is not a Verdict (a bool is refused: decide it instead).
        """
        if isinstance(verdict, (bool, np.bool_)) or not hasattr(verdict, "verdict"):
            raise TypeError(f"verdict must be a diffusionlab.stats.Verdict, got "
                            f"{type(verdict).__name__}; decide it from the replicates")
        record = verdict.to_dict() if hasattr(verdict, "to_dict") else dataclasses.asdict(verdict)
        if record["verdict"] not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {record['verdict']!r}")
        self.claims.append(
            {
                "claim": claim,
                "source": source,
                "expected": _jsonable(expected),
                "measured": _jsonable(measured),
                "previous": None if previous is None else bool(previous),
                **_jsonable(record),
            }
        )

    @contextlib.contextmanager
    def phase(self, name: str):
        """Counts the wall time spent inside the ``with`` block towards phase ``name``.

        ``finish`` writes the seconds per phase under ``"timing"`` in ``metrics.json``, with
        the time outside every phase (setup, data, figures, tables) as ``"other"``. Phases
        add up over repeated blocks. A phase opened inside another pauses the outer one, so
        no second is counted twice and the phases and ``"other"`` sum to ``"seconds"``.

        JAX dispatches work asynchronously: a block ends when Python leaves it, so work still
        running then counts towards whichever code waits for it first. End a block on a value
        read to the host (``np.asarray``, ``float``) for an exact split.

        Args:
          name: one of ``"training"``, ``"sampling"``, ``"evaluation"``.

        Raises:
          ValueError: ``name`` is not one of those three.
        """
        if name not in PHASES:
            raise ValueError(f"phase name must be one of {PHASES}; got {name!r}")
        now = _now()
        if self._open_phases:  # pause the enclosing phase
            outer = self._open_phases[-1]
            self._phase_seconds[outer[0]] += now - outer[1]
        entry = [name, now]
        self._open_phases.append(entry)
        try:
            yield
        finally:
            now = _now()
            self._phase_seconds[name] += now - entry[1]
            self._open_phases.pop()
            if self._open_phases:  # resume the enclosing phase
                self._open_phases[-1][1] = now

    def timing(self) -> dict[str, float]:
        """Seconds so far per phase (``PHASES``, then ``"other"``), rounded to milliseconds;
        a phase still open counts up to now."""
        return self._timing_at(_now())

    def _timing_at(self, now: float) -> dict[str, float]:
        seconds = dict(self._phase_seconds)
        if self._open_phases:
            name, since = self._open_phases[-1]
            seconds[name] += now - since
        seconds["other"] = max(now - self._start - sum(seconds.values()), 0.0)
        return {name: round(value, 3) for name, value in seconds.items()}

    def finish(self, config: Any) -> dict[str, Any]:
        """Writes ``metrics.json`` and ``claims.md``; returns the JSON payload."""
        now = _now()
        payload = {
            "name": self.name,
            "quick": self.quick,
            "seconds": round(now - self._start, 3),
            "timing": self._timing_at(now),
            "config": _jsonable(config),
            "metrics": self.metrics,
            "claims": self.claims,
            "figures": self.figures,
            "tables": self.tables,
        }
        (self.directory / "metrics.json").write_text(json.dumps(payload, indent=2, default=str))
        if self.claims:
            (self.directory / "claims.md").write_text(claims_table(self.claims))
        return payload
