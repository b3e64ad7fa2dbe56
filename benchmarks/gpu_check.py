"""The GPU path, checked in one command (issue 17): writes `report.md` and `gpu_check.json` under `--out`.

A GPU is lent only now and then, for minutes, so this is one prepared command that runs everything worth knowing
about ldeq on a GPU in at most 8 minutes (`make gpu-check`) and reports it. Each part runs in its own subprocess of
this script with its own time limit (a soft limit in the worker, SIGALRM, that keeps what it measured so far; and
`subprocess.run(timeout=...)` as the hard one). A part that fails or runs out of time is recorded with the tail of its
error or log, and the next part still runs. The report is rewritten after every part, so a killed run leaves the
parts it finished. Exit status: 0 when every part is ok and every check is met, 1 otherwise, 2 when CUDA is missing.

Parts (`--parts`, default all, in this order; the limits are those of a GPU run, `--quick` has generous ones):

env         (15 s) GPU name and memory, torch / CUDA / cuDNN versions, torch.cuda.is_available(), TF32 settings, the ldeq
            version and git commit, and what this machine still needs beyond the README's set-up.
data        (90 s) The synthetic benchmark of `ldeq.synth.ensure_synthetic` (5,000 + 1,000 stills, 20 clips) in the
            default cache (`$LDEQ_CACHE` or ~/.cache/ldeq), generated with every CPU core when it is missing, before
            the parts that need it (they would generate it with 2 workers). --quick: a tiny set under --out.
inference   (40 s) The `paper` preset (random weights, eval): images/s of an inference forward with exactly 12 solver
            iterations (tol 0, `ldeq.model.time_forward`; the f-evaluations are counted by a hook) at batch 1, 32 and
            128, in fp32 and in bf16 autocast, with the peak GPU memory and the achieved conv TFLOP/s.
train_step  (50 s) `ldeq.train.train_step` at batch 32 on a random batch: images/s and peak GPU memory
            (torch.cuda.max_memory_allocated) for the implicit and the JFB backward, fp32 and bf16; then Fig. 1 on the
            GPU, `ldeq.memory.fig1_memory_table`: one training step's memory for LDEQ implicit at 5, 10, 20 and 40
            iterations (flat: largest / smallest <= 1.10) and unrolled at 5 and 10 (growing), batch 8.
train_run   (90 s) A real run: `ldeq.train.train(TrainConfig.recipe('paper', dataset='synthetic', ...))` on the
            synthetic stills (640 of them, 40 steps of 16 per epoch, JFB, bf16, up to 8 loader workers), stopped by
            `max_steps` at step 210 (last.pt written), then resumed with `resume=True` to step 240: training loss per
            epoch (going down), images/s, and the resumed run continuing from the saved global step.
video       (45 s) RwR (k = 2) against frame-by-frame on the synthetic clips, `paper` preset with random weights: batch
            1 on 2 clips and batched over 16 clips, through `benchmarks/run_all.py`'s `load_clips` and `throughput`
            (`ldeq.tracking.track`: crop, model, mapping back); frames/s, f-evaluations per frame, peak GPU memory.
tables      (115 s) nbs/tables.ipynb in quick mode on the device through papermill (`-p quick True -p device cuda`):
            Tables 1-3 of the shipped demo models; needs papermill and ipykernel in this Python.
interop     (30 s) The official checkpoint format on the device: a `paper` model with random weights (tol 0, so that
            both devices make the same number of solver iterations) → `ldeq.checkpoint.save_official` →
            `load_official(map_location=device)`: the weights bit for bit, the configuration, and the landmarks of a
            fixed input within 1e-4 of the CPU model's (TF32 off; the default TF32 convolutions are reported too).

`--quick` runs the same code at tiny sizes (the `tiny` preset, batches 1-2, 3 + 1 training steps, 2 clips of 8
frames, a tiny synthetic set under --out): with `--device cpu --quick` it is the CPU dry run of
tests/test_gpu_check.py that keeps this script from rotting. Without CUDA, `--device cuda` (the default) prints one
line saying so and exits with status 2, after writing a report that says so.

Usage: python benchmarks/gpu_check.py [--out out/gpu_check] [--device cuda|cuda:N|cpu] [--quick]
       [--parts env,data,...] [--limits part=seconds,...]
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(BENCH_DIR) not in sys.path: sys.path.insert(0, str(BENCH_DIR))   # benchmarks/run_all.py
if str(REPO) not in sys.path: sys.path.append(str(REPO))                # ldeq, where it is not installed (a bare GPU image)

import torch

from run_all import IMPLICIT_FLAT_RATIO, MIB, cpu_model, fmt, git_state, jsonable, md_table, yes_no
from ldeq.model import LDEQ, LDEQConfig, count_parameters, model_cost, time_forward

PARTS = ('env', 'data', 'inference', 'train_step', 'train_run', 'video', 'tables', 'interop')
NEEDS_DATA = {'train_run': ('stills',), 'video': ('videos',), 'tables': ('stills', 'videos')}
PRECISIONS = ('fp32', 'bf16')
INTEROP_TOL = 1e-4            # max |landmark difference| (crop-normalised units) between the device and the CPU
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
    limits: tuple[tuple[str, float], ...]         # (part, seconds)
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
            limits=(('env', 15), ('data', 90), ('inference', 40), ('train_step', 50), ('train_run', 90), ('video', 45),
                    ('tables', 115), ('interop', 30)),
            infer_batches=(1, 32, 128), infer_iters=12, repeats=3, step_warmup=2, step_batch=32, memory_batch=8,
            implicit_iters=(5, 10, 20, 40), unrolled_iters=(5, 10), run_batch=16, run_steps_per_epoch=40, run_epochs=6,
            run_stop=210, run_val=64, video_clips=16, video_single=2, video_frames=50, video_repeats=1, rwr_k=2,
            interop_batch=2)
QUICK = Plan(preset='tiny', default_synthetic=False,
             limits=(('env', 60), ('data', 120), ('inference', 120), ('train_step', 180), ('train_run', 180),
                     ('video', 180), ('tables', 900), ('interop', 120)),
             infer_batches=(1, 2), infer_iters=5, repeats=1, step_warmup=1, step_batch=2, memory_batch=2, implicit_iters=(5, 20),
             unrolled_iters=(), run_batch=2, run_steps_per_epoch=2, run_epochs=2, run_stop=3, run_val=2, video_clips=2,
             video_single=1, video_frames=8, video_repeats=1, rwr_k=2, interop_batch=2)
assert sum(s for _, s in FULL.limits) <= GPU_BUDGET_S and [p for p, _ in FULL.limits] == list(PARTS)


def tiny_synthetic():
    "The --quick synthetic set: 8 + 8 stills and 2 clips of 8 frames at 128 px (a few seconds on one core)."
    from ldeq.synth import StillsConfig, SyntheticConfig, VideosConfig
    return SyntheticConfig(stills=StillsConfig(n_train=8, n_test=8, image_size=128),
                           videos=VideosConfig(n_hard=1, n_easy=1, n_frames=8, image_size=128))


# --------------------------------------------------------------------------------------------------- worker side
class PartTimeout(Exception):
    "A part ran past its soft time limit."


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


def write_json(path: Path, obj: Any) -> None:
    "Write `obj` as JSON atomically (temp file + os.replace)."
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(json.dumps(jsonable(obj), indent=1, allow_nan=False))
    os.replace(tmp, path)


def cpu_workers() -> int:
    "CPU cores this process may use."
    try: return len(os.sched_getaffinity(0))
    except AttributeError: return os.cpu_count() or 1


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
    from ldeq.synth import default_synthetic_root
    return default_synthetic_root() if plan.default_synthetic else out / 'synthetic'


def synthetic_ready(plan: Plan, out: Path) -> dict[str, bool]:
    "Whether the plan's synthetic stills and videos are complete (their marker files exist)."
    from ldeq.synth import MARKER
    root = synthetic_root(plan, out)
    return dict(stills=(root / 'wflw' / MARKER).is_file(), videos=(root / 'wflw_v' / MARKER).is_file())


def synthetic_paths(ctx: Ctx, parts: Sequence[str] = ('stills', 'videos')):
    "The plan's synthetic set, generated with every core when missing (one core for the tiny set)."
    from ldeq.synth import SyntheticConfig, ensure_synthetic
    full = ctx.plan.default_synthetic
    return ensure_synthetic(synthetic_root(ctx.plan, ctx.out), SyntheticConfig() if full else tiny_synthetic(), parts,
                            workers=cpu_workers() if full else 1, progress=False)


def safe_git_state() -> dict:
    "run_all.git_state, or unknown where there is no git (a copied checkout on a bare image)."
    try: return git_state()
    except OSError as e: return dict(commit=None, dirty=None, git_error=f'{type(e).__name__}: {e}')


def nvidia_smi() -> str | None:
    "Name, driver and memory from nvidia-smi, where it is installed."
    exe = shutil.which('nvidia-smi')
    if exe is None: return None
    try:
        r = subprocess.run([exe, '--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip() or r.stderr.strip() or None
    except (OSError, subprocess.TimeoutExpired) as e: return f'{type(e).__name__}: {e}'


def setup_needs(torch_version: str, torch_cuda: str | None, cuda_available: bool) -> list[str]:
    "What this machine still needs beyond the README's set-up, as sentences (empty: nothing)."
    needs = []
    if torch_cuda is None:
        needs.append(f'torch {torch_version} is a CPU-only build: install a CUDA build of torch {TORCH_PIN} (see the note above)')
    elif not cuda_available: needs.append(f'torch {torch_version} is built with CUDA {torch_cuda}, but no GPU is visible (driver?)')
    if torch_version.split('+')[0] != TORCH_PIN:
        needs.append(f'torch {torch_version} here; the project pins torch=={TORCH_PIN} (these numbers are for this version)')
    missing = [m for m in ('papermill', 'ipykernel') if importlib.util.find_spec(m) is None]
    if missing: needs.append(f"the tables part needs {' and '.join(missing)} in this Python ({sys.executable}): pip install {' '.join(missing)}")
    return needs


# ------------------------------------------------------------------------------------------------------------ env
def env_part(ctx: Ctx) -> dict:
    "Versions, the device, and what this machine still needs."
    import ldeq
    avail = torch.cuda.is_available()
    d = dict(python=platform.python_version(), executable=sys.executable, platform=platform.platform(), cpu=cpu_model(),
             cpu_count=os.cpu_count(), cpu_workers=cpu_workers(), torch=torch.__version__, torch_cuda=torch.version.cuda,
             cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None, cuda_available=avail,
             device=str(ctx.device), ldeq=ldeq.__version__, ldeq_file=ldeq.__file__, **safe_git_state(),
             tf32_convolutions=torch.backends.cudnn.allow_tf32, tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
             cudnn_benchmark=torch.backends.cudnn.benchmark, nvidia_smi=nvidia_smi(), gpu=None)
    if ctx.cuda:
        p = torch.cuda.get_device_properties(ctx.device)
        torch.zeros(1, device=ctx.device)                       # the CUDA context
        d.update(gpu=p.name, gpu_memory_gib=p.total_memory / 2 ** 30, capability=f'{p.major}.{p.minor}',
                 multiprocessors=p.multi_processor_count, gpu_count=torch.cuda.device_count(),
                 bf16_supported=torch.cuda.is_bf16_supported())
    d['needs'] = setup_needs(torch.__version__, torch.version.cuda, avail)
    return d


def env_summary(r: dict) -> str:
    "One line of the env part."
    gpu = f"{r['gpu']}, {r['gpu_memory_gib']:.1f} GiB" if r.get('gpu') else f"no GPU used ({r['device']})"
    return (f"{gpu}; torch {r['torch']}, CUDA {r['torch_cuda'] or '–'}, cuDNN {r['cudnn'] or '–'}; "
            f"ldeq {r['ldeq']} at {(r.get('commit') or 'unknown commit')[:10]}")


def env_report(r: dict) -> str:
    "Markdown of the env part."
    rows = [['GPU', r.get('gpu') or '–'], ['GPU memory', fmt(r.get('gpu_memory_gib'), '.1f') + ' GiB'],
            ['compute capability / SMs', f"{r.get('capability', '–')} / {r.get('multiprocessors', '–')}"],
            ['nvidia-smi', r.get('nvidia_smi') or '–'], ['torch.cuda.is_available()', r['cuda_available']],
            ['torch / CUDA / cuDNN', f"{r['torch']} / {r['torch_cuda'] or '–'} / {r['cudnn'] or '–'}"],
            ['bf16 supported', r.get('bf16_supported', '–')],
            ['TF32 convolutions / matmul; cudnn.benchmark', f"{r['tf32_convolutions']} / {r['tf32_matmul']}; {r['cudnn_benchmark']}"],
            ['python', f"{r['python']} ({r['executable']})"], ['platform', r['platform']],
            ['CPU', f"{r['cpu']} ({r['cpu_count']} CPUs, {r['cpu_workers']} usable)"],
            ['ldeq', f"{r['ldeq']} ({r['ldeq_file']})"],
            ['git', f"{r.get('commit') or 'unknown'}{' (dirty)' if r.get('dirty') else ''}"]]
    needs = '\n'.join(f'- {n}' for n in r['needs']) if r['needs'] else '- nothing: this machine has what the check needs'
    return md_table(['', ''], rows) + '\n\nWhat this machine still needs:\n\n' + needs


# ----------------------------------------------------------------------------------------------------------- data
def data_part(ctx: Ctx) -> dict:
    "The synthetic stills, then the videos, of the plan: generated with every core where missing, each timed."
    from ldeq.synth import MARKER
    res = dict(root=str(synthetic_root(ctx.plan, ctx.out)), default_set=ctx.plan.default_synthetic,
               workers=cpu_workers() if ctx.plan.default_synthetic else 1, cached=synthetic_ready(ctx.plan, ctx.out))
    for part, sub in (('stills', 'wflw'), ('videos', 'wflw_v')):
        t0 = time.perf_counter()
        paths = synthetic_paths(ctx, (part,))
        res[part] = dict(path=str(getattr(paths, sub)), seconds=time.perf_counter() - t0,
                         config=json.loads((getattr(paths, sub) / MARKER).read_text())['config'])
        ctx.save(res)
    return res


def data_summary(r: dict) -> str:
    "One line of the data part."
    def part(k: str, what: str) -> str:
        return f"{what} {'cached' if r['cached'][k] else 'generated'} in {r[k]['seconds']:.0f} s" if k in r else f'no {k}'
    s, v = r.get('stills', {}).get('config'), r.get('videos', {}).get('config')
    sizes = ', '.join(([f"{s['n_train']:,} + {s['n_test']:,} stills"] if s else [])
                      + ([f"{v['n_hard'] + v['n_easy']} clips × {v['n_frames']} frames"] if v else []))
    return f"{sizes} under {r['root']}: {part('stills', 'stills')}, {part('videos', 'videos')} ({r['workers']} workers)"


def data_report(r: dict) -> str:
    "Markdown of the data part."
    paths = '; '.join(f"{k} `{r[k]['path']}`" for k in ('stills', 'videos') if k in r)
    return (f"{data_summary(r)}.\n\n`ldeq.synth.ensure_synthetic` (stills: WFLW layout, videos: WFLW-V layout): {paths}"
            + ('' if r['default_set'] else ' (--quick: a tiny set, not the benchmark)') + '.')


# ------------------------------------------------------------------------------------------------------ inference
def inference_part(ctx: Ctx) -> dict:
    "Images/s of an inference forward with exactly `infer_iters` solver iterations, per batch and precision."
    from run_all import count_f_evals
    from ldeq.train import autocast
    p, dev = ctx.plan, ctx.device
    cfg = LDEQConfig.preset(p.preset)
    torch.manual_seed(0)
    model = LDEQ(cfg).to(dev).eval()
    f_evals = count_f_evals(model, 1, p.infer_iters)
    gflop = model_cost(cfg).forward_flops(f_evals) / 1e9
    res = dict(preset=p.preset, params=count_parameters(model), iters=p.infer_iters, f_evals=f_evals,
               gflop_per_image=gflop, repeats=p.repeats, rows=[])
    for precision in PRECISIONS:
        for b in p.infer_batches:
            reset_peak(dev)
            with autocast(dev, precision): ms = time_forward(model, b, p.infer_iters, repeats=p.repeats, warmup=1)
            res['rows'].append(dict(precision=precision, batch=b, ms_per_image=ms, images_per_s=1000 / ms,
                                    tflops=gflop * 1000 / ms / 1e3, peak_mib=peak_mib(dev)))
            ctx.save(res)
        free_cuda(dev)
    res['checks'] = dict(exact_f_evals=f_evals == p.infer_iters)          # inference: the extra step reuses the solver's f(z*)
    return res


def inference_summary(r: dict) -> str:
    "One line of the inference part."
    best = {pr: max((x for x in r['rows'] if x['precision'] == pr), key=lambda x: x['images_per_s'], default=None) for pr in PRECISIONS}
    return '; '.join(f"{pr} {fmt(b['images_per_s'], '.0f')} images/s at batch {b['batch']}" for pr, b in best.items() if b)


def inference_report(r: dict) -> str:
    "Markdown of the inference part."
    rows = [[x['precision'], x['batch'], fmt(x['ms_per_image'], '.2f'), fmt(x['images_per_s'], '.1f'), fmt(x['tflops'], '.1f'),
             fmt(x['peak_mib'], '.0f')] for x in r['rows']]
    return (f"`{r['preset']}` preset ({r['params'] / 1e6:.2f} M parameters), random weights, eval, no grad: an inference "
            f"forward with exactly {r['iters']} solver iterations (tol 0) = {r['f_evals']} evaluations of f (counted by a "
            f"hook), {r['gflop_per_image']:.0f} GFLOP per image (convolutions, `ldeq.model.model_cost`). Best of "
            f"{r['repeats']} timed runs after a warm-up (`ldeq.model.time_forward`); bf16 is autocast.\n\n"
            + md_table(['precision', 'batch', 'ms / image', 'images/s', 'conv TFLOP/s', 'peak GPU MiB'], rows))


# ----------------------------------------------------------------------------------------------------- train_step
def train_step_part(ctx: Ctx) -> dict:
    "Training-step images/s and peak memory per backward and precision; then Fig. 1's memory rows on the device."
    from run_all import ldeq_config, median_time
    from ldeq.memory import fig1_memory_table
    from ldeq.train import train_step
    p, dev = ctx.plan, ctx.device
    cfg = LDEQConfig.preset(p.preset)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(p.step_batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g).to(dev)
    target = torch.rand(p.step_batch, cfg.n_landmarks, 2, generator=g).to(dev)
    res = dict(preset=p.preset, batch=p.step_batch, repeats=p.repeats, warmup=p.step_warmup, steps=[], memory=[],
               memory_batch=p.memory_batch)
    for backward in ('implicit', 'jfb'):
        for precision in PRECISIONS:
            torch.manual_seed(0)
            model = LDEQ(ldeq_config(p.preset, backward)).to(dev)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            losses, solver_steps = [], []
            def step():
                loss, s = train_step(model, x, target, opt, precision=precision)
                losses.append(loss.item()); solver_steps.append(s.float().mean().item())
            for _ in range(p.step_warmup): step()              # warm-up (cuDNN, the allocator, AdamW's state)
            reset_peak(dev)
            t, _ = median_time(step, p.repeats, 0, dev)
            res['steps'].append(dict(backward=backward, precision=precision, step_s=t, images_per_s=p.step_batch / t,
                                     solver_steps=statistics.mean(solver_steps), loss=losses[-1], peak_mib=peak_mib(dev)))
            ctx.save(res)
            del model, opt
            free_cuda(dev)
    for backward, iters in (('implicit', p.implicit_iters), ('unrolled', p.unrolled_iters)):
        if not iters: continue
        res['memory'] += [dict(r, backward=backward) for r in fig1_memory_table(
            p.preset, p.memory_batch, ldeq_iters=iters, shg_stacks=(), backwards=(backward,), device=str(dev))]
        ctx.save(res)
        free_cuda(dev)
    imp = [r for r in res['memory'] if r['backward'] == 'implicit']
    ratio = lambda key: max(r[key] for r in imp) / min(r[key] for r in imp) if imp and all(r[key] for r in imp) else None
    res.update(saved_ratio=ratio('saved_mib'), cuda_peak_ratio=ratio('cuda_peak_mib'))
    res['checks'] = dict(finite_losses=all(math.isfinite(r['loss']) for r in res['steps']),
                         implicit_saved_memory_flat=res['saved_ratio'] is not None and res['saved_ratio'] <= IMPLICIT_FLAT_RATIO,
                         implicit_gpu_memory_flat=None if res['cuda_peak_ratio'] is None else res['cuda_peak_ratio'] <= IMPLICIT_FLAT_RATIO)
    return res


def train_step_summary(r: dict) -> str:
    "One line of the train_step part."
    s = '; '.join(f"{x['backward']} {x['precision']} {fmt(x['images_per_s'], '.0f')} images/s"
                  + (f" ({fmt(x['peak_mib'], '.0f')} MiB)" if x['peak_mib'] is not None else '') for x in r['steps'])
    key = 'cuda_peak_ratio' if r.get('cuda_peak_ratio') is not None else 'saved_ratio'
    return s + (f"; implicit memory max/min over iterations ×{fmt(r.get(key), '.3f')}" if key in r else '')


def train_step_report(r: dict) -> str:
    "Markdown of the train_step part."
    steps = [[x['backward'], x['precision'], fmt(x['step_s'] * 1e3, '.1f'), fmt(x['images_per_s'], '.1f'),
              fmt(x['solver_steps'], '.1f'), fmt(x['peak_mib'], '.0f'), fmt(x['loss'], '.3g')] for x in r['steps']]
    mem = [[x['model'], x['setting'], fmt(x['saved_mib'], '.1f'), fmt(x['cuda_peak_mib'], '.0f'), fmt(x['peak_rss_mib'], '.0f'),
            fmt(x['seconds'], '.2f')] for x in r['memory']]
    parts = [f"`ldeq.train.train_step` (forward, eq. 4 loss, backward, AdamW step) on a random batch of {r['batch']}, "
             f"`{r['preset']}` preset; median of {r['repeats']} steps after {r['warmup']} warm-up steps; peak GPU memory "
             "(torch.cuda.max_memory_allocated) over the timed steps.",
             md_table(['backward', 'precision', 'ms / step', 'images/s', 'forward solver steps', 'peak GPU MiB', 'loss'], steps)]
    if mem:
        c = r.get('checks', {})
        parts += [f"Fig. 1 on this device (`ldeq.memory.fig1_memory_table`, batch {r['memory_batch']}, tol 0): one "
                  "training step's bytes saved for backward and its peak GPU memory.",
                  md_table(['model', 'setting', 'saved for backward MiB', 'peak GPU MiB', 'peak RSS growth MiB', 's'], mem),
                  f"- LDEQ implicit saved memory flat in the iterations (max/min ×{fmt(r.get('saved_ratio'), '.3f')} ≤ "
                  f"{IMPLICIT_FLAT_RATIO}): {yes_no(c.get('implicit_saved_memory_flat'))}\n"
                  f"- LDEQ implicit peak GPU memory flat (×{fmt(r.get('cuda_peak_ratio'), '.3f')}): "
                  f"{yes_no(c.get('implicit_gpu_memory_flat'))}"]
    return '\n\n'.join(parts)


# ------------------------------------------------------------------------------------------------------ train_run
def train_run_config(ctx: Ctx, out_dir: Path):
    "The TrainConfig of the short run: the `paper` recipe on the synthetic stills, shortened by the plan."
    from ldeq.train import TrainConfig
    p = ctx.plan
    return TrainConfig.recipe(
        'paper', preset=p.preset, dataset='synthetic', data_root=None if p.default_synthetic else str(ctx.out / 'synthetic'),
        train_subset=p.run_batch * p.run_steps_per_epoch, val_subset=p.run_val, epochs=p.run_epochs,
        batch_size=p.run_batch, backward='jfb', precision='bf16' if ctx.cuda else 'fp32',
        device=str(ctx.device), out_dir=str(out_dir), max_steps=p.run_stop,
        num_workers=max(0, min(8, cpu_workers() - 2)) if ctx.cuda else 0, progress=False)


def _epochs(history: list[dict]) -> list[dict]:
    "The per-epoch rows worth reporting."
    keys = ('epoch', 'global_step', 'train_loss', 'val_nme', 'train_solver_steps', 'lr', 'epoch_seconds')
    return [{k: r.get(k) for k in keys} for r in history]


def train_run_part(ctx: Ctx) -> dict:
    "A short real run to `max_steps` (last.pt written), then resumed from it to the end of its epochs."
    from ldeq.checkpoint import load_checkpoint
    from ldeq.train import train
    p, dev = ctx.plan, ctx.device
    synthetic_paths(ctx, ('stills',))                      # with every core, not the 2 workers of a first use in train()
    out_dir = ctx.out / 'train_run'
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = train_run_config(ctx, out_dir)
    total = p.run_epochs * p.run_steps_per_epoch
    res = dict(config={k: v for k, v in cfg.to_dict().items() if k in (
        'model', 'preset', 'backward', 'dataset', 'train_subset', 'val_subset', 'epochs', 'batch_size', 'lr', 'grad_clip',
        'precision', 'device', 'max_steps', 'num_workers')}, total_steps=total)
    reset_peak(dev)
    t0 = time.perf_counter()
    r1 = train(cfg)
    res.update(first=dict(seconds=time.perf_counter() - t0, global_step=r1.global_step, finished=r1.finished,
                          history=_epochs(r1.history), peak_mib=peak_mib(dev)))
    res['first']['images_per_s'] = r1.global_step * p.run_batch / res['first']['seconds']
    last = out_dir / 'last.pt'
    res['last_pt_mib'] = last.stat().st_size / MIB if last.is_file() else None
    ts = load_checkpoint(last, map_location='cpu').train_state if last.is_file() else None
    res['saved_step'] = None if ts is None else ts['global_step']
    ctx.save(res)
    del r1
    free_cuda(dev)
    t0 = time.perf_counter()
    r2 = train(dataclasses.replace(cfg, resume=True, max_steps=None))
    res['resumed'] = dict(seconds=time.perf_counter() - t0, global_step=r2.global_step, finished=r2.finished,
                          history=_epochs(r2.history), best_nme=r2.best_nme)
    h, n1 = res['resumed']['history'], len(res['first']['history'])
    later = h[1:] if len(h) > 1 else h                     # the first epoch includes cuDNN's and the loader's start-up
    steady = [p.run_batch * p.run_steps_per_epoch / r['epoch_seconds'] for r in later if r['epoch_seconds']]
    res['epoch_images_per_s'] = statistics.median(steady) if steady else None
    res['checks'] = dict(
        last_pt_written=res['saved_step'] is not None,
        stopped_at_max_steps=res['first']['global_step'] == p.run_stop == res['saved_step'] and not res['first']['finished'],
        resumed_from_saved_step=(r2.finished and r2.global_step == total and h[:n1] == res['first']['history']
                                 and (len(h) == n1 or h[n1]['global_step'] > p.run_stop)),
        finite_losses=all(math.isfinite(r['train_loss']) for r in h),
        loss_went_down=None if ctx.quick else (len(h) > 1 and h[-1]['train_loss'] < h[0]['train_loss']))
    return res


def train_run_summary(r: dict) -> str:
    "One line of the train_run part."
    h = (r.get('resumed') or r.get('first') or {}).get('history') or []
    loss = f"loss {h[0]['train_loss']:.3g} → {h[-1]['train_loss']:.3g} over {len(h)} epochs, " if h else ''
    first = r.get('first', {})
    return (loss + f"{fmt(first.get('images_per_s'), '.0f')} images/s end to end; stopped at step {r.get('saved_step')}, "
            f"resumed to {r.get('resumed', {}).get('global_step', '–')}")


def train_run_report(r: dict) -> str:
    "Markdown of the train_run part."
    c, first, res = r['config'], r['first'], r.get('resumed', {})
    h = res.get('history') or first['history']
    rows = [[x['epoch'] + 1, x['global_step'], fmt(x['train_loss'], '.4g'), fmt(None if x['val_nme'] is None else 100 * x['val_nme'], '.2f'),
             fmt(x['train_solver_steps'], '.1f'), fmt(x['lr'], '.2e'), fmt(x['epoch_seconds'], '.1f')] for x in h]
    checks = r.get('checks', {})
    return '\n\n'.join([
        f"`ldeq.train.train` with the `paper` recipe shortened: {c['model']} `{c['preset']}` ({c['backward']} backward), "
        f"{c['dataset']} stills (the first {c['train_subset']} training images, {c['val_subset']} validation images), "
        f"batch {c['batch_size']}, {c['epochs']} epochs = {r['total_steps']} steps, {c['precision']}, {c['num_workers']} "
        f"loader workers, on {c['device']}. First run: `max_steps={c['max_steps']}`, {first['seconds']:.1f} s, "
        f"{fmt(first['images_per_s'], '.1f')} images/s end to end (start-up, validation and checkpoints included), peak "
        f"GPU memory {fmt(first['peak_mib'], '.0f')} MiB; last.pt {fmt(r['last_pt_mib'], '.0f')} MiB at global step "
        f"{r['saved_step']}. Resumed (`resume=True`): {fmt(res.get('seconds'), '.1f')} s to global step "
        f"{res.get('global_step', '–')}; per-epoch rate {fmt(r.get('epoch_images_per_s'), '.1f')} images/s (median over "
        "epochs after the first, validation included).",
        md_table(['epoch', 'global step', 'train loss', 'val NME %', 'solver steps', 'lr', 's'], rows),
        '\n'.join(f"- {k.replace('_', ' ')}: {yes_no(v)}" for k, v in checks.items())])


# ---------------------------------------------------------------------------------------------------------- video
def video_part(ctx: Ctx) -> dict:
    "Frames/s of RwR and frame-by-frame, batch 1 and batched over many clips (random weights)."
    from run_all import load_clips, throughput
    from ldeq.tracking import FrameByFrame, RwR
    p, dev = ctx.plan, ctx.device
    paths = synthetic_paths(ctx, ('videos',))
    clips = load_clips(Path(paths.wflw_v), p.video_clips, p.video_frames)
    torch.manual_seed(0)
    model = LDEQ(LDEQConfig.preset(p.preset)).to(dev).eval()
    n, single = len(clips), clips[:p.video_single]
    configs = [('frame-by-frame', FrameByFrame(), 1, single), (f'RwR k={p.rwr_k}', RwR(p.rwr_k), 1, single),
               (f'frame-by-frame, {n} clips batched', FrameByFrame(), n, clips),
               (f'RwR k={p.rwr_k}, {n} clips batched', RwR(p.rwr_k), n, clips)]
    res = dict(preset=p.preset, root=str(paths.wflw_v), frames_per_clip=p.video_frames, repeats=p.video_repeats, rows=[])
    for name, method, bs, cl in configs:
        reset_peak(dev)
        r = throughput(model, cl, [(method, bs)], p.video_repeats)[0]
        res['rows'].append(dict(name=name, batch_size=bs, clips=len(cl), peak_mib=peak_mib(dev), **r))
        ctx.save(res)
    base = res['rows'][0]['fps']
    for r in res['rows']: r['speedup'] = r['fps'] / base
    res['checks'] = dict(no_failed_frames=all(r['failed_frames'] == 0 for r in res['rows']),
                         batched_rwr_at_least_2x=None if ctx.quick else res['rows'][-1]['speedup'] >= 2.0)
    return res


def video_summary(r: dict) -> str:
    "One line of the video part."
    rows = r['rows']
    return (f"frame-by-frame {fmt(rows[0]['fps'], '.1f')} frames/s; "
            + '; '.join(f"{x['name']} {fmt(x['fps'], '.1f')} (×{fmt(x.get('speedup'), '.2f')})" for x in rows[1:]))


def video_report(r: dict) -> str:
    "Markdown of the video part."
    rows = [[x['name'], x['batch_size'], x['frames'], fmt(x['fps'], '.1f'), fmt(x['nfe_per_frame'], '.2f'),
             f"×{fmt(x.get('speedup'), '.2f')}", fmt(x['peak_mib'], '.0f'), x['failed_frames']] for x in r['rows']]
    return (f"`{r['preset']}` preset with random weights (so frame-by-frame solves may run to max_iters), synthetic clips "
            f"of {r['frames_per_clip']} frames from `{r['root']}`, decoded into memory; `ldeq.tracking.track` with the "
            f"given boxes (crop, model, mapping back: the CPU side is in the frames/s); median of {r['repeats']} round(s) "
            "after a 3-frame warm-up (`benchmarks/run_all.py`'s `throughput`).\n\n"
            + md_table(['method', 'clips per batch', 'frames', 'frames/s', 'f-evals / frame', 'vs frame-by-frame',
                        'peak GPU MiB', 'failed frames'], rows))


# --------------------------------------------------------------------------------------------------------- tables
def tables_part(ctx: Ctx) -> dict:
    "nbs/tables.ipynb in quick mode on the device, through papermill (in this Python)."
    missing = [m for m in ('papermill', 'ipykernel') if importlib.util.find_spec(m) is None]
    if missing: raise RuntimeError(f"the tables part needs {' and '.join(missing)} in {sys.executable}: pip install {' '.join(missing)}")
    paths = synthetic_paths(ctx)                           # with every core, before the notebook's first use
    out, nb = ctx.out / 'tables', ctx.out / 'tables.ipynb'
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, '-m', 'papermill', '--no-progress-bar', '--log-level', 'WARNING', str(REPO / 'nbs' / 'tables.ipynb'),
           str(nb), '-p', 'quick', 'True', '-p', 'device', str(ctx.device), '-p', 'out_dir', str(out), '-p', 'progress', 'False',
           '-p', 'threads', str(min(torch.get_num_threads(), 8))]
    if not ctx.plan.default_synthetic: cmd += ['-p', 'data_root', str(paths.wflw), '-p', 'video_root', str(paths.wflw_v)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)       # the worker's soft limit kills it (SIGALRM)
    secs = time.perf_counter() - t0
    if r.returncode: raise RuntimeError(f'papermill exited with status {r.returncode} after {secs:.0f} s:\n{(r.stdout + r.stderr)[-4000:]}')
    timing = {}
    if (out / 'timing.csv').is_file():
        for line in (out / 'timing.csv').read_text().splitlines()[1:]:
            k, _, v = line.partition(',')
            timing[k] = float(v)
    tables = {n: (out / f'{n}.md').read_text() for n in ('table1', 'table2', 'table3') if (out / f'{n}.md').is_file()}
    return dict(command=' '.join(cmd), seconds=secs, notebook=str(nb), out_dir=str(out), timing=timing, tables=tables,
                files=sorted(f.name for f in out.iterdir()),
                checks=dict(tables_written=all(n in tables for n in ('table1', 'table2', 'table3'))))


def tables_summary(r: dict) -> str:
    "One line of the tables part."
    return f"Tables 1-3 written to {r['out_dir']} in {r['seconds']:.0f} s (notebook timing: " + \
        ', '.join(f'{k} {v:.0f}' for k, v in r['timing'].items()) + ')'


def tables_report(r: dict) -> str:
    "Markdown of the tables part."
    return '\n\n'.join([f"`{r['command']}`", tables_summary(r) + '. QUICK mode: subsets of images and videos, not the benchmark.']
                       + [f"{n}:\n\n{t.strip()}" for n, t in r['tables'].items()])


# -------------------------------------------------------------------------------------------------------- interop
@contextlib.contextmanager
def tf32(enabled: bool):
    "cuDNN / matmul TF32 set to `enabled` inside the block."
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try: yield
    finally: torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def interop_part(ctx: Ctx) -> dict:
    "save_official → load_official(map_location=device): same weights, same config, the CPU model's landmarks within 1e-4."
    from run_all import ldeq_config
    from ldeq.checkpoint import config_diff, load_official, save_official
    p, dev = ctx.plan, ctx.device
    cfg = ldeq_config(p.preset, exact_iters=True)
    torch.manual_seed(0)
    model = LDEQ(cfg).eval()
    x = torch.randn(p.interop_batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1))
    path = ctx.out / 'interop_official.pth.tar'
    save_official(model, path)
    t0 = time.perf_counter()
    with torch.no_grad(): ref = model(x)
    cpu_s = time.perf_counter() - t0
    loaded = load_official(path, map_location=str(dev))
    sd, ld = model.state_dict(), loaded.state_dict()
    same_weights = sd.keys() == ld.keys() and all(torch.equal(sd[k], ld[k].cpu()) for k in sd)
    diffs = {}
    for name, on in (('tf32_off', False), ('tf32_on', True)):
        if name == 'tf32_on' and not ctx.cuda: continue
        with tf32(on), torch.no_grad(): out = loaded(x.to(dev))
        diffs[name] = dict(landmarks=(out.landmarks.float().cpu() - ref.landmarks).abs().max().item(),
                           heatmaps=(out.heatmaps.float().cpu() - ref.heatmaps).abs().max().item(),
                           steps=out.stats.steps.cpu().tolist())
    res = dict(preset=p.preset, batch=p.interop_batch, file_mib=path.stat().st_size / MIB, config_diff=config_diff(cfg, loaded.cfg),
               same_weights=same_weights, loaded_device=str(next(loaded.parameters()).device), cpu_steps=ref.stats.steps.tolist(),
               cpu_seconds=cpu_s, diffs=diffs, tol=INTEROP_TOL)
    path.unlink()
    res['checks'] = dict(same_weights=same_weights, same_config=not res['config_diff'],
                         on_device=res['loaded_device'].split(':')[0] == dev.type,
                         landmarks_within_tol=diffs['tf32_off']['landmarks'] <= INTEROP_TOL)
    return res


def interop_summary(r: dict) -> str:
    "One line of the interop part."
    d = r['diffs']
    return (f"max abs Δ landmarks vs CPU {d['tf32_off']['landmarks']:.2e} (TF32 off)"
            + (f", {d['tf32_on']['landmarks']:.2e} (TF32 on)" if 'tf32_on' in d else '') + f"; weights identical: {r['same_weights']}")


def interop_report(r: dict) -> str:
    "Markdown of the interop part."
    rows = [[k, f"{v['landmarks']:.3e}", f"{v['heatmaps']:.3e}", v['steps']] for k, v in r['diffs'].items()]
    c = r['checks']
    return '\n\n'.join([
        f"`{r['preset']}` LDEQ, random weights, tol 0 (every solve makes the same iterations), written with "
        f"`save_official` ({r['file_mib']:.1f} MiB), read with `load_official(map_location='{r['loaded_device']}')`, run "
        f"on a fixed input of {r['batch']} images and compared with the CPU model's outputs (CPU solver steps "
        f"{r['cpu_steps']}).",
        md_table(['device run', 'max abs Δ landmarks', 'max abs Δ heatmaps', 'solver steps'], rows),
        f"- weights bit for bit: {yes_no(c['same_weights'])}; configuration unchanged: {yes_no(c['same_config'])}"
        f"{' (' + '; '.join(r['config_diff']) + ')' if r['config_diff'] else ''}; on the device: {yes_no(c['on_device'])}\n"
        f"- landmarks within {r['tol']:g} of the CPU's (TF32 off): {yes_no(c['landmarks_within_tol'])}"])


# --------------------------------------------------------------------------------------------------------- parts
@dataclass(frozen=True)
class Part:
    "A part: what it runs (in a worker), its one-line summary and its report section."
    run: Callable[[Ctx], dict]
    summary: Callable[[dict], str]
    report: Callable[[dict], str]
    title: str


REGISTRY: dict[str, Part] = {
    'env': Part(env_part, env_summary, env_report, 'Environment'),
    'data': Part(data_part, data_summary, data_report, 'Synthetic data'),
    'inference': Part(inference_part, inference_summary, inference_report, 'Inference images/s'),
    'train_step': Part(train_step_part, train_step_summary, train_step_report, 'Training step and memory (Fig. 1)'),
    'train_run': Part(train_run_part, train_run_summary, train_run_report, 'A short training run, stopped and resumed'),
    'video': Part(video_part, video_summary, video_report, 'Video: RwR batched over clips'),
    'tables': Part(tables_part, tables_summary, tables_report, 'Tables notebook (quick) on the device'),
    'interop': Part(interop_part, interop_summary, interop_report, 'Official checkpoint format on the device'),
}


def worker_main(part: str, device: str, quick: bool, out: Path, result_file: Path, deadline: float) -> int:
    "Run one part in this (worker) process and write its result file; at `deadline` (time.time()) PartTimeout is raised."
    ctx = Ctx(QUICK if quick else FULL, torch.device(device), quick, out, result_file)
    def on_alarm(signum, frame): raise PartTimeout(f'{part} ran past its time limit')
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.time(), 0.01))
    try:
        result = REGISTRY[part].run(ctx)
        signal.setitimer(signal.ITIMER_REAL, 0)
        write_json(result_file, dict(status='ok', result=result))
        return 0
    except BaseException as e:                               # PartTimeout, errors, SystemExit: recorded with their traceback
        signal.setitimer(signal.ITIMER_REAL, 0)
        status = 'timeout' if isinstance(e, PartTimeout) else 'failed'
        write_json(result_file, dict(status=status, result=ctx.partial or None, error=f'{type(e).__name__}: {e}'[:2000],
                                     traceback=traceback.format_exc()[-4000:]))
        traceback.print_exc()
        return 1


# --------------------------------------------------------------------------------------------------- parent side
def soft_limit(limit: float) -> float:
    "The worker's own limit (from its start): a few seconds before the hard one, to report what it measured."
    return max(limit - 5.0, 0.85 * limit)


def log_tail(path: Path, n: int = 3000) -> str:
    "The last `n` characters of a log file."
    try: return path.read_text(errors='replace')[-n:]
    except OSError: return ''


def run_part(name: str, args: argparse.Namespace, limit: float) -> dict:
    "Run part `name` in a subprocess of this script within `limit` seconds: its status, result and error."
    out = Path(args.out).resolve()
    (out / 'parts').mkdir(parents=True, exist_ok=True); (out / 'logs').mkdir(parents=True, exist_ok=True)
    result_file, log = out / 'parts' / f'{name}.json', out / 'logs' / f'{name}.log'
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), '--worker', name, '--device', args.device, '--out', str(out),
           '--result', str(result_file), '--deadline', f'{time.time() + soft_limit(limit):.3f}'] + (['--quick'] if args.quick else [])
    env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p))
    t0, hard = time.perf_counter(), None
    with open(log, 'w') as f:
        try: rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=limit, cwd=REPO, env=env).returncode
        except subprocess.TimeoutExpired: rc, hard = None, f'no answer within the hard limit of {limit:g} s: killed'
    entry = dict(status='failed', wall_s=time.perf_counter() - t0, limit_s=limit, log=str(log))
    try: got = json.loads(result_file.read_text())
    except (OSError, ValueError): got = {}
    if got.get('result') is not None: entry['result'] = got['result']
    if hard is not None: entry.update(status='timeout', error=hard)
    elif got.get('status') in ('ok', 'failed', 'timeout'): entry.update({k: got[k] for k in ('status', 'error', 'traceback') if k in got})
    else: entry['error'] = f'the worker exited with status {rc} without a result'
    if entry['status'] != 'ok': entry['log_tail'] = log_tail(log)
    return entry


def checks_of(entry: dict) -> dict:
    "The checks a part's (possibly partial) result carries."
    return (entry.get('result') or {}).get('checks') or {}


def summary_line(name: str, entry: dict) -> str:
    "A part's one-line summary (its error's first line when it failed)."
    if entry['status'] in ('pending', 'running'): return ''
    if entry['status'] == 'ok':
        try: return REGISTRY[name].summary(entry['result'])
        except Exception as e: return f'(no summary: {type(e).__name__}: {e})'
    return entry['error'].strip().splitlines()[0][:300] if (entry.get('error') or '').strip() else ''


def write_report(state: dict, out: Path) -> None:
    "Write gpu_check.json and report.md under `out` (atomically)."
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / 'gpu_check.json', state)
    parts = state['parts']
    took = f"took {state.get('wall_s', 0):.0f} s" if state.get('finished') else f"{state.get('wall_s', 0):.0f} s so far (running)"
    lines = [f"# ldeq GPU check{' (--quick: tiny sizes, a dry run, not results)' if state['quick'] else ''}",
             f"`{state['command']}` on {state['device']} — started {state['started']}, {took}; time limits "
             f"{sum(e['limit_s'] for e in parts.values()):.0f} s in all.",
             f"**Setting up a GPU machine.** {SETUP_NOTE}"]
    if state.get('error'): lines.append(f"> **{state['error']}**")
    rows = []
    for name, e in parts.items():
        bad = [k for k, v in checks_of(e).items() if v is False]
        rows.append([name, f"**{e['status']}**" if e['status'] not in ('ok', 'pending') else e['status'], fmt(e.get('wall_s'), '.0f'),
                     f"{e['limit_s']:.0f}", ', '.join(f'NOT met: {k}' for k in bad) or ('all met' if checks_of(e) else '–'),
                     summary_line(name, e).replace('|', '/')])
    lines.append(md_table(['part', 'status', 's', 'limit s', 'checks', 'result'], rows))
    for name, e in parts.items():
        if e['status'] in ('pending', 'skipped', 'not run'): continue
        head = f"## {name}: {REGISTRY[name].title}\n\n_{e['status']}, {fmt(e.get('wall_s'), '.0f')} s of {e['limit_s']:.0f} s_"
        body = ''
        if e.get('result') is not None:
            try: body = REGISTRY[name].report(e['result'])
            except Exception as ex: body = f"(partial result, not reportable: {type(ex).__name__}: {ex})\n\n```json\n{json.dumps(e['result'], indent=1)[:3000]}\n```"
        if e['status'] != 'ok':
            body += f"\n\n**{e['status'].upper()}**: {e.get('error', '')}\n\n```\n{(e.get('traceback') or e.get('log_tail') or '').strip()[-3000:]}\n```"
        lines.append(f'{head}\n\n{body.strip()}')
    tmp = out / '.report.md.tmp'
    tmp.write_text('\n\n'.join(lines) + '\n')
    os.replace(tmp, out / 'report.md')


def cuda_missing(device: str) -> str | None:
    "The one-line message for a CUDA device without CUDA (None when CUDA is there or not asked for)."
    if not device.startswith('cuda') or torch.cuda.is_available(): return None
    build = 'a CPU-only build' if torch.version.cuda is None else f'built with CUDA {torch.version.cuda}, but no GPU is visible'
    return (f'gpu_check: CUDA is not available (torch {torch.__version__}, {build}): a GPU machine needs a CUDA build of '
            f'torch {TORCH_PIN} (README, "On a GPU"); use --device cpu --quick for a dry run')


def parse_limits(text: str | None, plan: Plan) -> dict[str, float]:
    "The plan's limits with `--limits part=seconds,...` overrides."
    limits = dict(plan.limits)
    for item in (text or '').split(','):
        if not item.strip(): continue
        name, _, secs = item.partition('=')
        name = name.strip()
        if name not in limits: raise ValueError(f'--limits: unknown part {name!r}; choose from {",".join(PARTS)}')
        try: limits[name] = float(secs)
        except ValueError: raise ValueError(f'--limits: {item.strip()!r} is not part=seconds') from None
        if not limits[name] > 0: raise ValueError(f'--limits: {name} must be > 0 seconds, got {secs}')
    return limits


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    "Command line."
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split('\n\n', 1)[1])
    ap.add_argument('--out', default='out/gpu_check', help='output folder (report.md, gpu_check.json, parts/, logs/)')
    ap.add_argument('--device', default='cuda', help="'cuda', 'cuda:N' or 'cpu' (default cuda)")
    ap.add_argument('--quick', action='store_true', help='tiny sizes everywhere (the tiny preset, a few steps): a dry run')
    ap.add_argument('--parts', help=f"comma-separated subset of {','.join(PARTS)} (default: all, in that order)")
    ap.add_argument('--limits', help="override time limits, e.g. 'tables=200,train_run=120' (seconds)")
    ap.add_argument('--worker', choices=PARTS, help=argparse.SUPPRESS)
    ap.add_argument('--result', type=Path, help=argparse.SUPPRESS)
    ap.add_argument('--deadline', type=float, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    try: dev = torch.device(a.device)
    except RuntimeError as e: ap.error(f'--device {a.device!r}: {e}')
    if dev.type not in ('cpu', 'cuda'): ap.error(f"--device must be 'cuda', 'cuda:N' or 'cpu', got {a.device!r}")
    if a.worker is not None: return a
    names = PARTS if a.parts is None else tuple(s.strip() for s in a.parts.split(',') if s.strip())
    bad = [s for s in names if s not in PARTS]
    if bad: ap.error(f'--parts: unknown {bad}; choose from {",".join(PARTS)}')
    if not names: ap.error('--parts: no part named')
    a.names = tuple(p for p in PARTS if p in names)
    try: a.limit_s = parse_limits(a.limits, QUICK if a.quick else FULL)
    except ValueError as e: ap.error(str(e))
    return a


def missing_data(name: str, state: dict, a: argparse.Namespace) -> str | None:
    "Why part `name` is skipped: the data part ran and did not leave the synthetic set it needs (else None)."
    data = state['parts'].get('data')
    if name not in NEEDS_DATA or data is None or data['status'] == 'ok': return None
    ready = synthetic_ready(QUICK if a.quick else FULL, Path(a.out))
    lacking = [k for k in NEEDS_DATA[name] if not ready[k]]
    return f"skipped: the data part ({data['status']}) left no synthetic {' or '.join(lacking)}" if lacking else None


def main(argv: Sequence[str] | None = None) -> int:
    "Run the requested parts one after the other (or, with --worker, one part in this process); the exit status."
    a = parse_args(argv)
    if a.worker is not None: return worker_main(a.worker, a.device, a.quick, Path(a.out), a.result, a.deadline)
    out = Path(a.out)
    state = dict(command=' '.join([Path(sys.executable).name, *(sys.argv if argv is None else [__file__, *argv])]),
                 started=time.strftime('%Y-%m-%d %H:%M:%S %Z'), device=a.device, quick=a.quick, parts_requested=list(a.names),
                 setup_note=SETUP_NOTE, parts={n: dict(status='pending', limit_s=a.limit_s[n]) for n in a.names})
    missing = cuda_missing(a.device)
    if missing:
        state.update(error=missing, finished=True)
        for e in state['parts'].values(): e.update(status='skipped', error='CUDA is not available')
        write_report(state, out)
        print(missing, file=sys.stderr)
        return 2
    def on_term(signum, frame): raise SystemExit(143)
    signal.signal(signal.SIGTERM, on_term)
    t_all = time.perf_counter()
    write_report(state, out)
    try:
        for name in a.names:
            why = missing_data(name, state, a)
            if why:
                state['parts'][name].update(status='skipped', error=why)
                print(f'== {name}: {why}', flush=True)
                continue
            print(f'== {name} (limit {a.limit_s[name]:g} s)', flush=True)
            state['parts'][name]['status'] = 'running'
            write_report(state, out)
            state['parts'][name] = entry = run_part(name, a, a.limit_s[name])
            state['wall_s'] = time.perf_counter() - t_all
            write_report(state, out)
            bad = [k for k, v in checks_of(entry).items() if v is False]
            print(f"== {name}: {entry['status']} in {entry['wall_s']:.0f} s"
                  + (f"; checks NOT met: {', '.join(bad)}" if bad else '') + f" — {summary_line(name, entry)}", flush=True)
    finally:
        state.update(wall_s=time.perf_counter() - t_all, finished=True)
        for e in state['parts'].values():
            if e['status'] in ('pending', 'running'): e.update(status='not run', error='the check was interrupted first')
        write_report(state, out)
    ok = all(e['status'] == 'ok' and False not in checks_of(e).values() for e in state['parts'].values())
    print(f"wrote {out / 'report.md'} and {out / 'gpu_check.json'} in {state['wall_s']:.0f} s: "
          + ('every part ok, every check met' if ok else 'NOT all parts ok / checks met'), flush=True)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
