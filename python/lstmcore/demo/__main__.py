"""python -m lstmcore.demo [TASK] [--quick] [--out DIR] [--epochs N] [--threads N]

Trains each task's model on lstmcore.torch and on torch.nn from the same initial weights,
writes the figures (PNG), summary.json, summary.md and losses.json into --out, and prints
the summary table. Bad arguments: one line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import sys
import tempfile
import time

from . import TASKS

DEPENDENCIES = ("torch", "tqdm", "matplotlib", "sklearn", "statsmodels")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line and exit status 2 (argparse's default prints the usage first)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def parse(argv=None):
    parser = _Parser(prog="python -m lstmcore.demo",
                     description="Real sequence models trained on real data with lstmcore.torch and "
                                 "torch.nn side by side: loss curves, results, time per epoch.")
    parser.add_argument("task", nargs="?", default="all", choices=TASKS + ("all",),
                        help="what to run (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller models and fewer epochs: all tasks in under 3 minutes on 2 cores")
    parser.add_argument("--out", default="lstmcore-demo",
                        help="folder for the figures and the summary (default: ./lstmcore-demo)")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="epochs of every model (default: each task's own)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="threads of both engines (default: torch's)")
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test's sizes
    args = parser.parse_args(argv)
    try:
        os.makedirs(args.out, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.out):
            pass
    except OSError as exc:
        parser.error(f"argument --out: cannot write to {args.out!r} ({exc.strerror or exc})")
    return args


def main(argv=None):
    args = parse(argv)
    missing = [m for m in DEPENDENCIES if importlib.util.find_spec(m) is None]
    if missing:
        print(f"python -m lstmcore.demo: error: {', '.join(missing)} not installed; the demo needs "
              f"its extra: pip install \"lstmcore[demo]\"", file=sys.stderr)
        return 1
    import torch  # noqa: PLC0415

    import lstmcore  # noqa: PLC0415

    from . import _plot, _report  # noqa: PLC0415
    from ._train import Settings  # noqa: PLC0415

    if args.threads is not None:
        torch.set_num_threads(args.threads)
        lstmcore.set_num_threads(args.threads)
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    settings = Settings(size=size, out=args.out, epochs=args.epochs)
    tasks = TASKS if args.task == "all" else (args.task,)
    print(f"lstmcore.torch against torch.nn: {', '.join(tasks)} ({size} sizes); threads: torch "
          f"{torch.get_num_threads()}, lstmcore {lstmcore.get_num_threads()}; output in {args.out}",
          flush=True)
    start = time.perf_counter()
    rows, runs = [], []
    for task in tasks:
        r, t = importlib.import_module(f"{__package__}.{task}").run(settings)
        rows += r
        runs += t
    _plot.speed(rows, args.out)
    info = dict(tasks=list(tasks), size=size, epochs=args.epochs or "each task's own",
                torch_threads=torch.get_num_threads(), lstmcore_threads=lstmcore.get_num_threads(),
                torch=torch.__version__, lstmcore=lstmcore.__version__, isa=lstmcore.get_isa(),
                machine=f"{platform.machine()}, {os.cpu_count()} logical CPUs",
                seconds=round(time.perf_counter() - start, 1))
    table = _report.write(args.out, rows, runs, info)
    print(f"\n{table}\n\n{_report.NOTE}\n\nTotal {info['seconds']} s; files in {args.out}: "
          f"{', '.join(sorted(os.listdir(args.out)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
