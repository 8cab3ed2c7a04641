"""Gathers every ``results/<name>/`` into ``results/REPORT.md``.

The report opens with the count of claims that hold, fail or stay undecided, and links each
claim that does not hold to its section. A failed experiment keeps its section, marked
failed, with its one-line error and a pointer to its log. It closes with each experiment's
wall time, split into training, sampling, evaluation, the rest, and the start-up.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import experiments
from experiments import _runner
from experiments._output import PHASES, VERDICTS, claims_table, interval_text


def _title(name: str) -> str:
    try:
        return experiments.load(name).TITLE
    except Exception:  # noqa: BLE001 - a module that no longer imports still gets its section
        return name


def _load(directory: pathlib.Path) -> tuple[dict | None, dict | None]:
    record = _runner.read_record(directory)
    try:
        payload = json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError):
        payload = None
    return payload, record


def _section(name: str, payload: dict | None, record: dict | None) -> list[str]:
    lines = [f'<a id="{name}"></a>', "", f"## {name}: {_title(name)}", ""]
    if payload is None and record is None:
        return lines + ["**Not run.** No results were found for this experiment.", ""]
    if payload is None or (record is not None and record.get("status") == "failed"):
        error = (record or {}).get("error") or "no results were written"
        log = f"{name}/{(record or {}).get('log', _runner.LOG_FILE)}"
        lines += [f"**Failed.** `{error}`", "", f"Log: [{log}]({log})", ""]
        return lines
    size = "quick" if payload.get("quick") else "default"
    lines += [f"_Config ({size} size, {payload.get('seconds', 0):.1f} s):_ "
              f"`{json.dumps(payload.get('config', {}))}`", ""]
    if payload.get("claims"):
        lines += ["**The essay's claims next to our measurements**", "",
                  claims_table(payload["claims"]), ""]
    directory_name = name
    for fig in payload.get("figures", []):
        lines += [f"![{fig['caption'] or fig['file']}]({directory_name}/{fig['file']})", ""]
        if fig["caption"]:
            lines += [f"*{fig['caption']}*", ""]
    return lines


def _tables(directory: pathlib.Path, payload: dict | None) -> list[str]:
    if payload is None:
        return []
    lines = []
    for table in payload.get("tables", []):
        path = directory / table["file"]
        if path.exists():
            lines += [path.read_text(), ""]
    return lines


def _summary(loaded: dict[str, tuple[dict | None, dict | None]]) -> list[str]:
    counts = dict.fromkeys(VERDICTS, 0)
    open_claims = []
    for name, (payload, _) in loaded.items():
        for claim in (payload or {}).get("claims", []):
            counts[claim["verdict"]] = counts.get(claim["verdict"], 0) + 1
            if claim["verdict"] != "holds":
                open_claims.append((name, claim))
    failed = [name for name, (payload, record) in loaded.items()
              if record is not None and (payload is None or record.get("status") == "failed")]
    missing = [name for name, (payload, record) in loaded.items()
               if payload is None and record is None]
    total = sum(counts.values())
    checksums = sorted({(record or {}).get("fd_digits_checksum") for _, record in loaded.values()}
                       - {None})
    lines = ["## Summary", "",
             f"**{total} claims: {counts['holds']} hold, {counts['fails']} fail, "
             f"{counts['undecided']} undecided.** "
             f"{len(loaded) - len(failed) - len(missing)} of {len(loaded)} experiments ran"
             + (f"; failed: {', '.join(f'[{n}](#{n})' for n in failed)}" if failed else "")
             + (f"; not run: {', '.join(f'[{n}](#{n})' for n in missing)}" if missing else "")
             + ".",
             ""]
    if checksums:
        lines += [f"FD-digits feature network: checksum `{'`, `'.join(checksums)}`"
                  + (" (**differs between experiments**: their FD values are not comparable)"
                     if len(checksums) > 1 else " (FD values are comparable with any run "
                     "that reports the same checksum)."), ""]
    if open_claims:
        lines += ["Claims that do not hold:", ""]
        lines += [f"- **{c['verdict']}**: [{name}](#{name}): {c['claim']}: {interval_text(c)}, "
                  f"n = {c.get('n', '?')} ({c.get('reason', '')})" for name, c in open_claims]
        lines.append("")
    return lines


def _percent(part: float, whole: float) -> str:
    return f" ({100 * part / whole:.0f} %)" if whole > 0 else ""


def _timing(loaded: dict[str, tuple[dict | None, dict | None]]) -> list[str]:
    """The wall-time table: each experiment's seconds (``run.json``), split into the phases
    its ``metrics.json`` timed. "start-up" is the time before the experiment's code ran
    (importing it, and the libraries it imports); "other" is the rest: data, figures and
    tables. A run without a split (failed, or written before phases were timed) leaves those
    cells empty and is left out of their totals. "CPU s" is the CPU time of all the run's
    threads; "cores used" is CPU s / seconds; "load at start" the machine's 1-minute load
    average when the run began (above the core count: the run shared a busy machine)."""
    parts = (*PHASES, "other", "start-up")
    lines = ["## Wall time", "",
             "| experiment | status | seconds | " + " | ".join(parts)
             + " | CPU s | cores used | load at start | peak RSS (MB) | memory mappings |",
             "|---|---|---|" + "---|" * len(parts) + "---|---|---|---|---|"]
    total = dict.fromkeys(("seconds", *parts), 0.0)
    split_seconds = 0.0  # the runs whose split is known, for the shares
    cpu_total, cpu_wall, cores = 0.0, 0.0, set()  # over the runs whose CPU time is known
    for name, (payload, record) in loaded.items():
        record = record or {}
        seconds = float(record.get("seconds") or 0.0)
        total["seconds"] += seconds
        timing = (payload or {}).get("timing")
        if record.get("status") == "ok" and isinstance(timing, dict):
            split = {p: float(timing.get(p) or 0.0) for p in PHASES}
            split["start-up"] = max(seconds - float(payload.get("seconds") or 0.0), 0.0)
            split["other"] = max(seconds - sum(split.values()), 0.0)
            for part, value in split.items():
                total[part] += value
            split_seconds += seconds
            cells = [f"{split[p]:.1f}" for p in parts]
        else:
            cells = [""] * len(parts)
        cpu, load = record.get("cpu_seconds"), record.get("load_at_start")
        if cpu is not None:
            cpu_total += float(cpu)
            cpu_wall += seconds
            cores.add(record.get("cores"))
        cpu_cells = ["" if cpu is None else f"{float(cpu):.1f}",
                     f"{float(cpu) / seconds:.2f}" if cpu is not None and seconds > 0 else "",
                     "" if load is None else f"{float(load):.2f}"]
        rss = record.get("peak_rss_mb")
        lines.append(f"| {name} | {record.get('status', 'missing')} | {seconds:.1f} | "
                     + " | ".join(cells + cpu_cells)
                     + f" | {'' if rss is None else f'{rss:.0f}'} | {record.get('memory_mappings', '')} |")
    shares = [f"{total[p]:.1f}{_percent(total[p], split_seconds)}" for p in parts]
    used = f"{cpu_total / cpu_wall:.2f}" if cpu_wall > 0 else ""
    lines += [f"| **total** | | {total['seconds']:.1f} | " + " | ".join(shares)
              + f" | {cpu_total:.1f} | {used} | | | |", ""]
    if cpu_wall > 0:
        machine = ", ".join(str(c) for c in sorted(cores, key=str))
        lines += [f"The runs with a recorded CPU time took {cpu_wall:.1f} s of wall time and "
                  f"{cpu_total:.1f} s of CPU time on a machine of {machine} core(s).", ""]
    span = _elapsed(record for _, record in loaded.values())
    if span is not None:
        lines += [f"They overlapped (several ran at once, `--jobs`): {span[0]:.1f} s from the "
                  f"first start to the last finish, for {span[1]:.1f} s of wall time summed.", ""]
    return lines


def _elapsed(records) -> tuple[float, float] | None:
    """``(first start to last finish, summed spans)`` of the runs that record both times,
    when at least two of them overlapped; else None (one at a time, the sum is the span)."""
    spans = sorted((float(r["started"]), float(r["finished"])) for r in records
                   if r and r.get("started") is not None and r.get("finished") is not None)
    last_finish, overlapped = float("-inf"), False
    for start, finish in spans:
        overlapped |= start < last_finish
        last_finish = max(last_finish, finish)
    if not overlapped:
        return None
    return last_finish - spans[0][0], sum(finish - start for start, finish in spans)


def write(results: str | pathlib.Path = "results",
          expected: Sequence[str] | None = None) -> pathlib.Path:
    """Writes ``REPORT.md`` with one section per experiment under ``results``.

    Args:
      results: the results folder.
      expected: experiments that should have run (``--all``: every one). Those with no
        results get a section saying so, instead of silently missing from the report.

    Returns:
      The path of ``REPORT.md``.
    """
    results = pathlib.Path(results)
    results.mkdir(parents=True, exist_ok=True)
    found = {d.name for d in results.iterdir()
             if d.is_dir() and ((d / "metrics.json").exists() or (d / _runner.RUN_FILE).exists())}
    names = sorted(found | set(expected or ()))
    loaded = {name: _load(results / name) for name in names}
    header = [
        "# diffusionlab report",
        "",
        "Generated by `make reproduce` (`python -m experiments --all`). Each section is one "
        "experiment in `experiments/`. Where an essay makes a claim, the claim stands next to "
        "what we measured, with the interval over replicates, the rule that decides it, and the "
        "verdict (holds, fails or undecided), whichever way it falls.",
        "",
    ]
    body = []
    for name, (payload, record) in loaded.items():
        body += _section(name, payload, record) + _tables(results / name, payload)
    path = results / "REPORT.md"
    path.write_text("\n".join(header + _summary(loaded) + body + _timing(loaded)))
    return path
