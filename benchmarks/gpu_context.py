"""What every part of `gpu_check.py` shares: the plan (the sizes of every part: the GPU check or --quick; the time
limits come from benchmarks/registry.py), the context of a part in its worker process, the plan's synthetic data
set, and peak GPU memory helpers."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .common import MIB, cpu_workers, write_json
from .registry import GPU_CHECK

PRECISIONS = ('fp32', 'bf16')
GPU_BUDGET_S = 480.0          # issue 17: the whole check within 8 minutes on one GPU
TORCH_PIN = '2.13.0'          # the project's torch (settings.ini, constraints.txt)
SETUP_NOTE = (
    "The README's set-up (`make env`) installs the CPU build of torch (torch==2.13.0+cpu from local wheels). A GPU "
    "machine needs a CUDA build of torch 2.13.0 instead: install it first from the PyTorch CUDA wheel index, "
    "`python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128` "
    "(the cuXXX variant the driver supports), then `make env` (or `.venv/bin/pip install -c constraints.txt "
    "torch==2.13.0 -e \".[dev]\"`), which keeps that build because torch==2.13.0 is already satisfied, then "
    "`make gpu-check`. On a machine whose Python already has a CUDA torch and ldeq's dependencies, "
    "`python3 benchmarks/gpu_check.py` runs from the checkout as it is (ldeq is imported from it); the tables part also "
    "needs papermill and ipykernel.")


# ------------------------------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class Plan:
    "Sizes of every part: `FULL` (the GPU check, <= 8 minutes on one GPU) or `QUICK` (--quick: tiny sizes, a dry run)."
    preset: str                                   # LDEQ preset of every part
    default_synthetic: bool                       # True: the default synthetic set in the cache; False: a tiny one under --out
    limits: tuple[tuple[str, float], ...]         # (part, seconds): the registry's limits
    infer_batches: tuple[int, ...]
    infer_iters: int                              # solver iterations of the inference forward (tol 0)
    repeats: int                                  # timed runs per measurement, after a warm-up
    step_warmup: int                              # untimed training steps before the timed ones
    step_batch: int                               # batch of the train_step timings
    memory_batch: int                             # batch of the Fig. 1 memory rows
    implicit_iters: tuple[int, ...]               # Fig. 1: LDEQ implicit at these iterations (must be flat)
    unrolled_iters: tuple[int, ...]               # Fig. 1: LDEQ unrolled at these (grows; the contrast)
    run_batch: int
    run_steps_per_epoch: int                      # train_subset = run_batch × this
    run_epochs: int
    run_stop: int                                 # max_steps of the first run; the resumed run finishes all epochs
    run_val: int                                  # val_subset
    video_clips: int                              # clips of the batched configurations
    video_single: int                             # clips of the batch-1 configurations
    video_frames: int                             # frames of each clip
    video_repeats: int
    rwr_k: int
    interop_batch: int


FULL = Plan(preset='paper', default_synthetic=True,
            limits=tuple((name, s.limit_s) for name, s in GPU_CHECK.items()),
            infer_batches=(1, 32, 128), infer_iters=12, repeats=3, step_warmup=2, step_batch=32, memory_batch=8,
            implicit_iters=(5, 10, 20, 40), unrolled_iters=(5, 10), run_batch=16, run_steps_per_epoch=40, run_epochs=6,
            run_stop=210, run_val=64, video_clips=16, video_single=2, video_frames=50, video_repeats=1, rwr_k=2,
            interop_batch=2)
QUICK = Plan(preset='tiny', default_synthetic=False,
             limits=tuple((name, s.quick_limit_s) for name, s in GPU_CHECK.items()),
             infer_batches=(1, 2), infer_iters=5, repeats=1, step_warmup=1, step_batch=2, memory_batch=2, implicit_iters=(5, 20),
             unrolled_iters=(), run_batch=2, run_steps_per_epoch=2, run_epochs=2, run_stop=3, run_val=2, video_clips=2,
             video_single=1, video_frames=8, video_repeats=1, rwr_k=2, interop_batch=2)
assert sum(s for _, s in FULL.limits) <= GPU_BUDGET_S


def tiny_synthetic():
    "The --quick synthetic set: 8 + 8 stills and 2 clips of 8 frames at 128 px (a few seconds on one core)."
    from ldeq.faces.synth import StillsConfig, SyntheticConfig, VideosConfig
    return SyntheticConfig(stills=StillsConfig(n_train=8, n_test=8, image_size=128),
                           videos=VideosConfig(n_hard=1, n_easy=1, n_frames=8, image_size=128))


# ------------------------------------------------------------------------------------------------------- context
@dataclass
class Ctx:
    "What a part needs: the plan, the device, where to write, and a way to keep partial results."
    plan: Plan
    device: torch.device
    quick: bool
    out: Path
    result_file: Path
    partial: dict = dataclasses.field(default_factory=dict)

    def save(self, result: dict) -> None:
        "Keep `result` as this part's partial result (what a timeout or a failure still reports)."
        self.partial = result
        write_json(self.result_file, dict(status='running', result=result))

    @property
    def cuda(self) -> bool: return self.device.type == 'cuda'


# ------------------------------------------------------------------------------------------------ GPU memory, data
def reset_peak(dev: torch.device) -> None:
    "Synchronise and reset the peak GPU memory counter (nothing on CPU)."
    if dev.type == 'cuda': torch.cuda.synchronize(dev); torch.cuda.reset_peak_memory_stats(dev)


def peak_mib(dev: torch.device) -> float | None:
    "torch.cuda.max_memory_allocated in MiB since the last reset (None on CPU)."
    return torch.cuda.max_memory_allocated(dev) / MIB if dev.type == 'cuda' else None


def free_cuda(dev: torch.device) -> None:
    "Return cached GPU memory between measurements."
    if dev.type == 'cuda': torch.cuda.synchronize(dev); torch.cuda.empty_cache()


def synthetic_root(plan: Plan, out: Path) -> Path:
    "Where the plan's synthetic set lives: the default cache, or a tiny set under --out."
    from ldeq.faces.synth import default_synthetic_root
    return default_synthetic_root() if plan.default_synthetic else out / 'synthetic'


SPREAD_CLIPS = 25                      # the default set's videos here: the main job's quarter (25 + 25 of its 100 + 100)


def _videos_root(plan: Plan, out: Path) -> Path:
    "Where the plan's videos live: the main job's spread of the default set in its own cache, or the tiny set's."
    from ldeq.faces.synth import part_root
    return (part_root(f'spread{SPREAD_CLIPS}') if plan.default_synthetic else synthetic_root(plan, out)) / 'wflw_v'


def synthetic_ready(plan: Plan, out: Path) -> dict[str, bool]:
    "Whether the plan's synthetic stills and videos are complete (their marker files exist)."
    from ldeq.faces.synth import MARKER
    return dict(stills=(synthetic_root(plan, out) / 'wflw' / MARKER).is_file(), videos=(_videos_root(plan, out) / MARKER).is_file())


def synthetic_paths(ctx: Ctx, parts: Sequence[str] = ('stills', 'videos')):
    "The plan's synthetic set, generated with every core when missing (one core for the tiny set); the default set's videos are the main job's spread."
    from ldeq.faces.synth import SyntheticConfig, ensure_spread_videos, ensure_synthetic
    full = ctx.plan.default_synthetic
    if not full: return ensure_synthetic(synthetic_root(ctx.plan, ctx.out), tiny_synthetic(), parts, workers=1, progress=False)
    paths = ensure_synthetic(synthetic_root(ctx.plan, ctx.out), SyntheticConfig(), [p for p in parts if p != 'videos'],
                             workers=cpu_workers(), progress=False)
    if 'videos' in parts: paths.wflw_v = ensure_spread_videos(SPREAD_CLIPS, workers=cpu_workers(), progress=False)
    return paths
