"""Training throughput of the demo models per speed lever, the input pipeline alone, and the side-by-side accuracy runs.

Three parts (`--parts`, default `steps,data`; `sbs` trains, so it is asked for explicitly):

steps  images/s of one training step (`ldeq.training.train.train_step`: forward, eq. 4 loss, backward, clip-free AdamW step) on
       one real batch of the synthetic training stills (augmented as in training), batch 16, for every lever:
       LDEQ implicit (today's old `demo_ldeq`: forward cap 8), LDEQ JFB at forward caps 8 and 4, Stacked-Hourglass and
       UNet, each in fp32, bf16 autocast and channels_last. LDEQ is timed from two weight sets: the shipped demo
       checkpoint (the trained regime, where the forward solve stops early) and a fresh initialisation (the first
       epochs, where it runs to its cap). Median of `--repeats` steps after 2 warm-up steps. bf16 is timed only when
       this CPU computes it natively: a probe convolution in bf16 that is more than 3x slower than in fp32 (no
       AVX512-BF16 / AMX: oneDNN falls back to a reference kernel) is recorded with its ratio instead.
data   The input pipeline alone: decode + crop, and decode + crop + augmentation (`ldeq.training.augment`), images/s over the
       first 256 training stills, and the share of a training step it would take at batch 16 without workers.
sbs    Side by side: each adopted lever against the setting it replaces, with the same seed, the first 1,000 training
       stills, 3 epochs, 200 validation images (`ldeq-train` runs, one at a time, in `--sbs-dir`; a finished run is
       reused). Reports validation NME per epoch and the training images/s of each run.

Usage: python -m benchmarks.train_speed [--out out/bench/train_speed] [--parts steps,data,sbs] [--quick]
(python benchmarks/train_speed.py ... runs the same). Writes train_speed.json and train_speed.md under --out; run_all.py's
`train` section (benchmarks/bench_train.py) runs the parts steps and data.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

if __name__ == '__main__' and not __package__:          # started as a file: run as `python -m benchmarks.train_speed`
    import _launch; _launch.as_module(__file__)

import numpy as np
import torch

from ldeq.core.assets import demo_checkpoints
from ldeq.models.checkpoint import build_model, load_model
from ldeq.training.train import (SeededStills, TrainConfig, make_augment, read_log_csv, run_model_config, stills_root,
                                 train_step)

from .common import command_line, cpu_model, doc_parser, jsonable, md_table, median_time

BF16_SLOW = 3.0        # a bf16 probe conv this many times slower than fp32 means: no native bf16 on this CPU


@dataclass(frozen=True)
class Lever:
    "One training-step setting to time."
    model: str                       # 'ldeq' | 'stacked_hourglass' | 'unet'
    backward: str | None = None      # LDEQ only
    train_iters: int | None = None   # LDEQ forward cap in the step
    precision: str = 'fp32'
    memory_format: str = 'contiguous'

    @property
    def label(self) -> str:
        m = {'ldeq': 'LDEQ', 'stacked_hourglass': 'Stacked-Hourglass', 'unet': 'UNet'}[self.model]
        if self.model == 'ldeq': m += f' {self.backward}, cap {self.train_iters}'
        return f"{m}, {self.precision}{', channels_last' if self.memory_format == 'channels_last' else ''}"


def levers() -> list[Lever]:
    "Every setting of the table: three LDEQ variants and the two baselines, each in fp32, bf16 and channels_last."
    bases = [Lever('ldeq', 'implicit', 8), Lever('ldeq', 'jfb', 8), Lever('ldeq', 'jfb', 4),
             Lever('stacked_hourglass'), Lever('unet')]
    return [dataclasses.replace(b, **kw) for b in bases
            for kw in (dict(), dict(precision='bf16'), dict(memory_format='channels_last'))]


def recipe_lever(name: str) -> Lever:
    "The Lever of a training recipe (what its steps compute)."
    c = TrainConfig.recipe(name)
    mc = run_model_config(c)
    it = (c.train_solver_iters or mc.deq.fwd.max_iters) if c.model == 'ldeq' else None
    return Lever(c.model, mc.deq.backward if c.model == 'ldeq' else None, it, c.precision, c.memory_format)


# The settings before this issue (the old recipes, as shipped in demo_models.json until then): LDEQ implicit with a
# forward cap of 8, both baselines fp32 contiguous.
OLD = {'ldeq': Lever('ldeq', 'implicit', 8), 'stacked_hourglass': Lever('stacked_hourglass'), 'unet': Lever('unet')}


def real_batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    "The first `n` synthetic training stills at 128², augmented as in training (epoch 0)."
    cfg = TrainConfig.recipe('demo_ldeq', progress=False)
    from ldeq.data.formats import open_stills
    ds = SeededStills(open_stills(stills_root(cfg), 'train', size=128), make_augment(cfg, 128), seed)
    items = [ds[(0, i)] for i in range(n)]
    return torch.stack([a for a, _, _ in items]), torch.stack([b for _, b, _ in items])


def bf16_native(repeats: int = 5) -> tuple[bool, float]:
    "(native, ratio): whether a 3×3 conv at the small preset's width is at most BF16_SLOW× slower in bf16 than fp32."
    conv, x = torch.nn.Conv2d(64, 64, 3, padding=1), torch.randn(16, 64, 32, 32)
    t = lambda fn: median_time(fn, repeats)[0]
    with torch.no_grad():
        f32 = t(lambda: conv(x))
        with torch.autocast('cpu', dtype=torch.bfloat16): b16 = t(lambda: conv(x))
    return b16 / f32 <= BF16_SLOW, b16 / f32


def make_model(lever: Lever, trained: bool) -> torch.nn.Module:
    "The model of a lever: the shipped demo weights (trained) or a fresh seed-0 initialisation."
    if trained: m = load_model(demo_checkpoints()[lever.model])
    else:
        torch.manual_seed(0)
        m = build_model(lever.model, 'small')
    if lever.model == 'ldeq':
        d = m.deq_layer.cfg
        m.deq_layer.cfg = dataclasses.replace(d, backward=lever.backward)
    return m.train().to(memory_format=torch.channels_last if lever.memory_format == 'channels_last' else torch.contiguous_format)


def time_steps(lever: Lever, trained: bool, x: torch.Tensor, y: torch.Tensor, repeats: int) -> dict:
    "Median seconds of a training step of `lever` and the mean forward solver steps (LDEQ)."
    m = make_model(lever, trained)
    if lever.memory_format == 'channels_last': x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-7)             # a tiny step: the weights stay in their regime
    times, steps = [], []
    for i in range(2 + repeats):
        t = time.perf_counter()
        _, st = train_step(m, x, y, opt, precision=lever.precision, max_iters=lever.train_iters)
        if i >= 2:
            times.append(time.perf_counter() - t)
            if st is not None: steps.append(float(st.float().mean()))
    s = statistics.median(times)
    return dict(label=lever.label, lever=dataclasses.asdict(lever), trained=trained, seconds=s, images_per_s=len(x) / s,
                times=times, solver_steps=float(np.mean(steps)) if steps else None)


def steps_part(repeats: int, quick: bool, progress: bool) -> dict:
    "Step throughput of every lever (bf16 only where native)."
    x, y = real_batch(4 if quick else 16)
    native, ratio = bf16_native()
    rows, skipped = [], []
    todo = [lv for lv in levers() if not (quick and lv.memory_format == 'channels_last')]
    for lv in todo:
        if lv.precision == 'bf16' and not native:
            skipped.append(dict(label=lv.label, why=f'no native bf16 on this CPU: a bf16 conv is {ratio:.0f}x slower than fp32'))
            continue
        for trained in ((True, False) if lv.model == 'ldeq' else (True,)):
            r = time_steps(lv, trained, x, y, repeats)
            rows.append(r)
            if progress: print(f"  {r['label']:48s} {'trained' if trained else 'fresh  '}  {r['seconds']:.3f} s/step  "
                               f"{r['images_per_s']:6.1f} img/s" + (f"  solver steps {r['solver_steps']:.1f}" if r['solver_steps'] else ''),
                               file=sys.stderr, flush=True)
    return dict(batch=len(x), repeats=repeats, bf16_native=native, bf16_conv_ratio=ratio, rows=rows, skipped=skipped,
                summary=speedups(rows))


def speedups(rows: list[dict]) -> list[dict]:
    "Old recipe vs adopted recipe images/s per model (trained regime and, for LDEQ, fresh weights), against the targets."
    out = []
    for kind, recipe in (('ldeq', 'demo_ldeq'), ('stacked_hourglass', 'demo_shg'), ('unet', 'demo_unet')):
        new, target = recipe_lever(recipe), (3.0 if kind == 'ldeq' else 1.5)
        for trained in (True, False):
            find = lambda lv: next((r for r in rows if r['lever'] == dataclasses.asdict(lv) and r['trained'] == trained), None)
            a, b = find(OLD[kind]), find(new)
            if a is None or b is None: continue
            sp = b['images_per_s'] / a['images_per_s']
            out.append(dict(model=kind, trained=trained, old=a['label'], new=b['label'], old_ips=a['images_per_s'],
                            new_ips=b['images_per_s'], speedup=sp, target=target, met=sp >= target))
    return out


def data_part(n: int) -> dict:
    "Images/s of decode + crop, and of decode + crop + augmentation, over the first `n` training stills."
    cfg = TrainConfig.recipe('demo_ldeq', progress=False)
    from ldeq.data.formats import open_stills
    src = open_stills(stills_root(cfg), 'train', size=128)
    out = {}
    for name, aug in (('decode+crop', None), ('decode+crop+augment', make_augment(cfg, 128))):
        ds = SeededStills(src, aug, 0)
        ds[(0, 0)]
        t = time.perf_counter()
        for i in range(n): ds[(0, i)]
        out[name] = n / (time.perf_counter() - t)
    return dict(images=n, images_per_s=out)


SBS_PAIRS = (('ldeq', 'demo_ldeq', ['--backward', 'implicit', '--train-solver-iters', 'none'], 'ldeq_implicit8', 'ldeq_jfb4'),
             ('stacked_hourglass', 'demo_shg', ['--memory-format', 'contiguous'], 'shg_contig', 'shg_cl'),
             ('unet', 'demo_unet', ['--memory-format', 'contiguous'], 'unet_contig', 'unet_cl'))
SBS_ARGS = ['--train-subset', '1000', '--epochs', '3', '--no-progress', '--ckpt-every-steps', '0']


def sbs_part(sbs_dir: Path, progress: bool) -> dict:
    "Old setting vs adopted recipe per model: 3 epochs on 1,000 stills, same seed (runs reused when finished)."
    rows = []
    for kind, recipe, old_args, old_name, new_name in SBS_PAIRS:
        for name, extra in ((old_name, old_args), (new_name, [])):
            d = sbs_dir / name
            if not (d / 'log.csv').is_file() or len(read_log_csv(d / 'log.csv')) < 3:
                cmd = [sys.executable, '-m', 'ldeq.training.train', '--recipe', recipe, *SBS_ARGS, *extra, '--out-dir', str(d)]
                if (d / 'last.pt').exists(): cmd.append('--resume')
                if progress: print('  ' + ' '.join(cmd[2:]), file=sys.stderr, flush=True)
                subprocess.run(cmd, check=True)
            h = read_log_csv(d / 'log.csv')
            secs = h[-1]['total_seconds']
            rows.append(dict(model=kind, run=name, setting='old' if name == old_name else 'adopted',
                             args=' '.join(['--recipe', recipe, *SBS_ARGS, *extra]), val_nme=[r['val_nme'] for r in h],
                             images_per_s=h[-1]['global_step'] * 16 / secs, seconds=secs))
    return dict(dir=str(sbs_dir), rows=rows)


def report(res: dict) -> str:
    "The markdown report."
    parts = [f"# Training throughput (issue 13)\n\n`{res['command']}` — {res['started']}; CPU: {res['cpu']}, "
             f"{res['threads']} torch threads, load average at the start {res['load']:.2f}."]
    if 'steps' in res:
        s = res['steps']
        rows = [[r['label'], 'shipped weights' if r['trained'] else 'fresh init', f"{r['seconds']:.3f}", f"{r['images_per_s']:.1f}",
                 '–' if r['solver_steps'] is None else f"{r['solver_steps']:.1f}"] for r in s['rows']]
        rows += [[k['label'], '–', '–', '–', f"skipped ({k['why']})"] for k in s['skipped']]
        parts.append(f"## One training step, batch {s['batch']} (median of {s['repeats']})\n\n"
                     + md_table(['setting', 'weights', 's / step', 'images/s', 'forward solver steps'], rows))
        parts.append('## Old recipe → adopted recipe\n\n' + md_table(
            ['model', 'weights', 'old', 'adopted', 'old img/s', 'adopted img/s', 'speed-up', 'target', 'status'],
            [[r['model'], 'shipped' if r['trained'] else 'fresh', r['old'], r['new'], f"{r['old_ips']:.1f}", f"{r['new_ips']:.1f}",
              f"{r['speedup']:.2f}x", f"≥ {r['target']:.1f}x", '**met**' if r['met'] else '**not met**'] for r in s['summary']]))
    if 'data' in res:
        d = res['data']
        parts.append(f"## Input pipeline ({d['images']} stills, one process)\n\n" + md_table(
            ['stage', 'images/s', 'ms per batch of 16'], [[k, f'{v:.0f}', f'{16000 / v:.1f}'] for k, v in d['images_per_s'].items()]))
    if 'sbs' in res:
        rows = res['sbs']['rows']
        ep = max(len(r['val_nme']) for r in rows)
        parts.append('## Side by side: same seed, 1,000 stills, 3 epochs, 200 validation images\n\n' + md_table(
            ['model', 'setting', 'run', *[f'val NME ep {i + 1} (%)' for i in range(ep)], 'train images/s'],
            [[r['model'], r['setting'], r['run'], *[f'{100 * v:.2f}' for v in r['val_nme']], f"{r['images_per_s']:.1f}"] for r in rows]))
    return '\n\n'.join(parts) + '\n'


def run(parts: Sequence[str], out: Path, repeats: int = 5, quick: bool = False, sbs_dir: Path = Path('runs/sbs'),
        threads: int = 2, progress: bool = True) -> dict:
    "Run the chosen parts, write train_speed.json / train_speed.md under `out`, return the results."
    torch.set_num_threads(threads)
    res = dict(command=command_line(), started=time.strftime('%Y-%m-%d %H:%M:%S %Z'),
               cpu=cpu_model(), threads=threads, load=os.getloadavg()[0], platform=platform.platform())
    if 'steps' in parts: res['steps'] = steps_part(1 if quick else repeats, quick, progress)
    if 'data' in parts: res['data'] = data_part(16 if quick else 256)
    if 'sbs' in parts: res['sbs'] = sbs_part(sbs_dir, progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'train_speed.json').write_text(json.dumps(jsonable(res), indent=1))
    (out / 'train_speed.md').write_text(report(res))
    return res


def main(argv: Sequence[str] | None = None) -> int:
    ap = doc_parser(__doc__)
    ap.add_argument('--out', type=Path, default=Path('out/bench/train_speed'))
    ap.add_argument('--parts', default='steps,data', help='comma-separated subset of steps,data,sbs')
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--sbs-dir', type=Path, default=Path('runs/sbs'))
    ap.add_argument('--quick', action='store_true', help='batch 4, 1 repeat, no channels_last rows: a smoke test')
    a = ap.parse_args(argv)
    parts = [p.strip() for p in a.parts.split(',') if p.strip()]
    bad = [p for p in parts if p not in ('steps', 'data', 'sbs')]
    if bad or not parts: ap.error(f'--parts: unknown {bad}; choose from steps,data,sbs')
    if a.repeats < 1: ap.error('--repeats must be >= 1')
    run(parts, a.out, a.repeats, a.quick, a.sbs_dir, a.threads)
    print(f"wrote {a.out / 'train_speed.json'} and {a.out / 'train_speed.md'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
