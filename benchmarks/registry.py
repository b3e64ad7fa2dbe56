"""The sections of both benchmark drivers in one table: `run_all.py`'s sections (`RUN_ALL`) and `gpu_check.py`'s parts
(`GPU_CHECK`), in the order they run.

An entry names the module that implements the section (benchmarks/<module>.py, imported only when the section is
used: this table imports no benchmark module, so nothing imports in a circle), its report title, what it needs (a
CUDA device; the synthetic data that gpu_check's data part prepares) and how long it takes: run_all estimates each
section before it runs it (the module's `estimate(ctx)`, from FLOP counts and a calibration of the machine);
gpu_check gives each part a fixed time limit, for a GPU run and for --quick, which is its estimate.

A section module provides `run(ctx) -> dict` (its JSON result) and `report(result) -> str` (its markdown); run_all's
sections also `estimate(ctx) -> float` (seconds), gpu_check's parts also `summary(result) -> str` (one line).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Section:
    "A benchmark section: the module that implements it, its title, what it needs and how long it may take."
    name: str                              # the name in --sections / --parts, in the JSON and in the report
    module: str                            # benchmarks/<module>.py
    title: str                             # its heading in the report
    needs_gpu: bool = False                # runs only on a CUDA device (run_all leaves it out on CPU)
    needs_data: tuple[str, ...] = ()       # gpu_check: the synthetic parts ('stills', 'videos') it needs
    limit_s: float | None = None           # gpu_check: its time limit on a GPU in seconds (None: the module estimates)
    quick_limit_s: float | None = None     # gpu_check: its time limit with --quick

    @property
    def impl(self) -> ModuleType:
        "The module that implements the section."
        return importlib.import_module(f'{__package__}.{self.module}')

    def run(self, ctx: Any) -> dict:
        "Measure: the section's JSON result."
        return self.impl.run(ctx)

    def estimate(self, ctx: Any) -> float:
        "Seconds it should take: the module's estimate, else the time limit of the plan (`ctx.quick` or not)."
        if self.limit_s is None: return self.impl.estimate(ctx)
        return self.quick_limit_s if ctx.quick else self.limit_s

    def report(self, result: dict) -> str:
        "The section's markdown."
        return self.impl.report(result)

    def summary(self, result: dict) -> str:
        "The section's one-line summary."
        return self.impl.summary(result)


def _table(*sections: Section) -> dict[str, Section]:
    return {s.name: s for s in sections}


RUN_ALL = _table(
    Section('solvers', 'bench_solvers', 'Solver speed vs torchdeq'),
    Section('memory', 'bench_memory', 'Training memory and time vs iterations (Fig. 1)'),
    Section('video', 'bench_video', 'Video throughput and memory vs length'),
    Section('cost', 'bench_cost', 'Model cost'),
    Section('train', 'bench_train', 'Training throughput per speed lever'),
    Section('gpu', 'bench_gpu', 'GPU (paper preset)', needs_gpu=True),
)

GPU_CHECK = _table(
    Section('env', 'gpu_env', 'Environment', limit_s=15, quick_limit_s=60),
    Section('data', 'gpu_data', 'Synthetic data', limit_s=180, quick_limit_s=120),
    Section('inference', 'gpu_inference', 'Inference images/s', limit_s=30, quick_limit_s=120),
    Section('train_step', 'gpu_train_step', 'Training step and memory (Fig. 1)', limit_s=40, quick_limit_s=180),
    Section('train_run', 'gpu_train_run', 'A short training run, stopped and resumed', needs_data=('stills',),
            limit_s=90, quick_limit_s=180),
    Section('video', 'gpu_video', 'Video: RwR batched over clips', needs_data=('videos',), limit_s=35, quick_limit_s=180),
    Section('tables', 'gpu_tables', 'Tables notebook (quick) on the device', needs_data=('stills', 'videos'),
            limit_s=70, quick_limit_s=900),
    Section('interop', 'gpu_interop', 'Official checkpoint format on the device', limit_s=20, quick_limit_s=120),
)
