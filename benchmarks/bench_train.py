"""run_all.py's `train` section: training images/s per speed lever and the input pipeline, the parts `steps` and
`data` of benchmarks/train_speed.py (its own script; see there)."""
from __future__ import annotations

from . import train_speed
from .bench_context import Context


def estimate(ctx: Context) -> float:
    "Seconds on 2 quiet AVX2 cores: 16 timed LDEQ / baseline step settings of 7 steps, plus the input pipeline."
    return 20.0 if ctx.quick else 200.0


def run(ctx: Context) -> dict:
    "Training images/s per speed lever and the input pipeline (`benchmarks/train_speed.py`, parts steps and data)."
    return train_speed.run(('steps', 'data'), ctx.out / 'train_speed', repeats=ctx.plan.repeats + 2, quick=ctx.quick,
                           threads=ctx.threads, progress=ctx.progress)


def report(s: dict) -> str:
    "Markdown of the train section (the headings of train_speed.md one level down)."
    return train_speed.report(s).split('\n', 2)[2].replace('\n## ', '\n### ')
