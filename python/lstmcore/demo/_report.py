"""The summary: one row per trained model, printed as a table and written to
``summary.json``, ``summary.md`` and ``losses.json`` (every step's loss of each engine)."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from ._train import ENGINES, LABELS

NOTE = ("Metrics on held-out data. Time: the median training time of an epoch; speed-up: "
        "torch.nn's over lstmcore's (above 1: lstmcore is faster). Loss gap: the largest relative "
        "difference of the two engines' training losses at the same step over the first 20 steps "
        "(float32 rounding: the engines sum in different orders), then that of their mean losses "
        "per epoch. Where training is chaotic it amplifies the rounding, as it amplifies a change of "
        "1e-7 in the initial weights of torch.nn trained against itself: later on the curves can part.")


@dataclass
class Row:
    task: str
    model: str
    metric: str
    values: dict            # engine -> the metric on held-out data
    seconds_per_epoch: dict  # engine -> median training time of an epoch
    speedup: float          # torch.nn's time over lstmcore's
    loss_gap: float         # largest relative difference of the two losses, first 20 steps
    epoch_loss_gap: float   # largest relative difference of the two engines' epoch means
    baseline: str = ""      # what the metric is to be compared with, in words

    @classmethod
    def of(cls, run, task, model, metric, values, baseline=""):
        return cls(task, model, metric, {e: float(values[e]) for e in ENGINES},
                   {e: run.seconds_per_epoch(e) for e in ENGINES}, run.speedup(),
                   run.loss_gap(), run.epoch_loss_gap(), baseline)


def _fmt(v):
    return f"{v:.4g}"


def table(rows):
    """The summary as a markdown table."""
    head = (["task", "model", "metric"] + [LABELS[e] for e in ENGINES] + ["baseline"]
            + [f"{LABELS[e]} s/epoch" for e in ENGINES] + ["speed-up", "loss gap: 20 steps / epochs"])
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < 3 or h == "baseline" else "--:" for i, h in enumerate(head)) + "|"]
    for r in rows:
        cells = ([r.task, r.model, r.metric] + [_fmt(r.values[e]) for e in ENGINES] + [r.baseline]
                 + [f"{r.seconds_per_epoch[e]:.3g}" for e in ENGINES]
                 + [f"{r.speedup:.2f}×", f"{r.loss_gap:.0e} / {r.epoch_loss_gap:.0e}"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(out, rows, runs, settings):
    """Writes summary.json, summary.md and losses.json into ``out``; returns the table."""
    md = table(rows)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as fh:
        fh.write(f"{md}\n\n{NOTE}\n\n{_settings_line(settings)}\n")
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump({"settings": settings, "rows": [asdict(r) for r in rows]}, fh, indent=1)
    with open(os.path.join(out, "losses.json"), "w", encoding="utf-8") as fh:
        json.dump({r.name: {"steps_per_epoch": r.steps_per_epoch, "losses": r.losses,
                            "epoch_seconds": r.epoch_seconds} for r in runs}, fh)
    return md


def _settings_line(s):
    return ", ".join(f"{k}: {v}" for k, v in s.items())
