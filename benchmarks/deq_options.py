"""Side by side: the training-side DEQ options (issue 29) against today's demo LDEQ recipe.

Every run is `ldeq-train --recipe demo_ldeq` on the side-by-side protocol of `benchmarks/train_speed.py --parts sbs`
(same seed 0, the first 1,000 synthetic training stills, 3 epochs, 200 validation images, 2 threads), one run per
variant, one after the other, each in its own process (in `--runs-dir`, by default runs/deq_options/<E>ep for E
epochs; a finished run is reused, an interrupted one resumed):

baseline     the recipe as shipped: JFB backward, forward cap 4 in training, 8 in validation
rho_log      the same with ρ(∂f/∂z) logged every 20 steps: must give the baseline's numbers (ρ has no gradient and
             its own seeds), and its step time is the cost of logging
jacobian     + Jacobian regularisation (Bai et al. 2021): weight 0.02 every 2nd step, one Hutchinson vector (at a fresh
             initialisation ‖∂f/∂z‖²_F / d is 0.4–1.1 against an eq. 4 loss of 0.06, so the penalty starts at 10–35% of
             the loss; for the shipped model it is about 1e-3, a fraction of a percent)
correction   + fixed-point correction (Bai et al. 2022): 2 states (after 2 of 4 solver steps, and the output), γ 0.8
stochastic   + stochastic iteration caps (the published LDEQ's stochastic_max_iters): cap uniform in 1..4 per step
phantom      + damped phantom gradients (Geng et al. 2021): 3 tracked steps, τ 0.6 (JFB is 1 step, τ 1)

Every variant but the baseline logs ρ every 20 steps too (so each has a ρ trajectory). Reported per variant, from its
`log.csv` and its final weights: validation NME (%) after each epoch, FR₁₀ and the mean forward f-evaluations at test
time (validation, the model's cap 8), ρ(∂f/∂z) at the end (power iteration on JVPs, 30 steps, at z* of the model's own
test-time solve of the first 32 validation images: median, max, fraction above 1), the ρ logged in training (last
epoch), and the mean seconds of an optimiser step (`step_seconds`: forward, loss, backward, update).

Usage: python -m benchmarks.deq_options [--out out/bench/deq_options] [--runs-dir DIR] [--only a,b]
       [--epochs 3] [--quick]
(python benchmarks/deq_options.py ... runs the same). Writes deq_options.csv and deq_options.md under --out.
`--quick` is a smoke test (48 stills, 1 epoch, 8 validation images, every option every step): minutes, not a result.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

if __name__ == '__main__' and not __package__:          # started as a file: run as `python -m benchmarks.deq_options`
    import _launch; _launch.as_module(__file__)

import numpy as np
import torch

from ldeq.models.checkpoint import load_checkpoint
from ldeq.training.train import FirstN, SeededStills, TrainConfig, read_log_csv, run_model_config, stills_root
from ldeq.video.diagnostics import contraction

from .common import command_line, cpu_model, doc_parser, fmt, md_table
from .train_speed import SBS_ARGS

RHO = ['--rho-every', '20']


@dataclass(frozen=True)
class Variant:
    "One side-by-side run: a name, what it changes, and its `ldeq-train` options on top of the protocol."
    name: str
    what: str
    args: tuple[str, ...] = ()


VARIANTS = (
    Variant('baseline', 'demo_ldeq as shipped (JFB, training cap 4)'),
    Variant('rho_log', 'ρ logged every 20 steps', (*RHO,)),
    Variant('jacobian', 'Jacobian penalty, weight 0.02, every 2nd step', ('--jac-weight', '0.02', '--jac-every', '2', *RHO)),
    Variant('correction', 'fixed-point correction, 2 states, γ 0.8', ('--correction-states', '2', '--correction-gamma', '0.8', *RHO)),
    Variant('stochastic', 'stochastic caps, uniform in 1..4', ('--stochastic-iters', *RHO)),
    Variant('phantom', 'damped phantom gradient, 3 steps, τ 0.6', ('--jfb-steps', '3', '--jfb-tau', '0.6', *RHO)),
)
QUICK_ARGS = ['--train-subset', '48', '--epochs', '1', '--val-subset', '8', '--no-progress', '--ckpt-every-steps', '0']


def protocol_args(epochs: int, quick: bool) -> list[str]:
    "The side-by-side protocol's options (train_speed's SBS_ARGS; `epochs` replaces its 3), or the smoke test's."
    if quick: return list(QUICK_ARGS)
    a = list(SBS_ARGS)
    a[a.index('--epochs') + 1] = str(epochs)
    return a


def variant_args(v: Variant, quick: bool) -> list[str]:
    "A variant's options; in the smoke test every periodic option fires every step."
    a = list(v.args)
    if quick:
        for flag in ('--rho-every', '--jac-every'):
            if flag in a: a[a.index(flag) + 1] = '1'
    return a


def run_variant(v: Variant, runs: Path, proto: list[str], quick: bool, epochs: int, progress: bool) -> Path:
    "Train a variant (skipped when its log has every epoch; resumed when a last.pt exists); return its folder."
    d = runs / v.name
    want = 1 if quick else epochs
    if (d / 'log.csv').is_file() and len(read_log_csv(d / 'log.csv')) >= want: return d
    cmd = [sys.executable, '-m', 'ldeq.training.train', '--recipe', 'demo_ldeq', *proto, *variant_args(v, quick), '--out-dir', str(d)]
    if (d / 'last.pt').exists(): cmd.append('--resume')
    if progress: print('  ' + ' '.join(cmd[2:]), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    return d


def end_rho(run: Path, n_images: int, iters: int) -> np.ndarray:
    "ρ(∂f/∂z) at the final model's test-time z* (its own solver and cap) for the first `n_images` validation stills."
    lc = load_checkpoint(run / 'last.pt')
    model = lc.model.eval()
    cfg = TrainConfig.from_dict(lc.train_state['train_config'])
    from ldeq.data.formats import open_stills
    src = FirstN(open_stills(stills_root(cfg), 'test', size=run_model_config(cfg).image_size), n_images)
    ds = SeededStills(src, None)
    x = torch.stack([ds[(0, i)][0] for i in range(len(ds))])
    with torch.no_grad(): z = model(x, extra_step=False).z_star
    return contraction(model, x, z, iters).numpy()


def measure(v: Variant, run: Path, quick: bool) -> dict:
    "The numbers of one finished run."
    h = read_log_csv(run / 'log.csv')
    rho = end_rho(run, 4 if quick else 32, 5 if quick else 30)
    last = h[-1]
    step_s = [r['step_seconds'] for r in h if r.get('step_seconds') is not None]
    return dict(variant=v.name, what=v.what, args=' '.join(v.args), epochs=len(h),
                **{f'val_nme_ep{i + 1}': 100 * r['val_nme'] for i, r in enumerate(h)},
                val_nme=100 * last['val_nme'], val_fr10=100 * last['val_fr10'], test_f_evals=last['val_solver_steps'],
                train_f_evals=last['train_solver_steps'], rho_end_median=float(np.median(rho)), rho_end_max=float(rho.max()),
                rho_end_above_1=float((rho > 1).mean()), train_rho_last=last.get('train_rho'),
                train_rho_max_last=last.get('train_rho_max'), train_jac_last=last.get('train_jac'),
                step_seconds=float(np.mean(step_s)) if step_s else None, train_loss=last['train_loss'],
                total_minutes=last['total_seconds'] / 60)


def write_csv(rows: list[dict], path: Path) -> None:
    "One row per variant (every key of every row; missing cells empty)."
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows: w.writerow({k: r.get(k) for k in keys})


def report(rows: list[dict], meta: dict) -> str:
    "The markdown report: the side-by-side table and the deltas to the baseline."
    base = next((r for r in rows if r['variant'] == 'baseline'), None)
    ep = max(r['epochs'] for r in rows)
    d = lambda r, k, spec='+.2f': fmt(r[k] - base[k], spec) if base is not None and r.get(k) is not None and base.get(k) is not None else '–'
    ratio = lambda r: fmt(r['step_seconds'] / base['step_seconds'], '.2f') + '×' if base and r['step_seconds'] and base['step_seconds'] else '–'
    table = md_table(
        ['variant', 'what', *[f'val NME ep {i + 1} (%)' for i in range(ep)], 'Δ NME vs baseline (pts)', 'FR₁₀ (%)',
         'test f-evals', 'ρ at end: median / max / >1', 'ρ in training (last epoch: mean / max)', 's / step', 'vs baseline'],
        [[r['variant'], r['what'], *[fmt(r.get(f'val_nme_ep{i + 1}')) for i in range(ep)], d(r, 'val_nme'), fmt(r['val_fr10'], '.1f'),
          fmt(r['test_f_evals']), f"{fmt(r['rho_end_median'])} / {fmt(r['rho_end_max'])} / {fmt(100 * r['rho_end_above_1'], '.0f')}%",
          f"{fmt(r['train_rho_last'])} / {fmt(r['train_rho_max_last'])}", fmt(r['step_seconds'], '.3f'), ratio(r)] for r in rows])
    head = (f"# DEQ training options side by side (issue 29)\n\n`{meta['command']}` — {meta['started']}; CPU: {meta['cpu']} "
            f"(torch CPU capability {meta['capability']}), load average at the start {meta['load']:.2f}.\n\n"
            f"Protocol: `ldeq-train --recipe demo_ldeq {meta['protocol']}` plus each variant's options; same seed, same data, "
            f"same epochs. ρ at the end: the final weights, power iteration (30 JVPs) at z* of the model's test-time solve of "
            f"the first 32 validation images. s / step: mean seconds of an optimiser step over the run (`step_seconds`).")
    log = next((r for r in rows if r['variant'] == 'rho_log'), None)
    same = None if base is None or log is None else all(base.get(f'val_nme_ep{i + 1}') == log.get(f'val_nme_ep{i + 1}') for i in range(ep))
    check = '' if same is None else ('\n\nρ logging left the run unchanged (rho_log\'s validation NME equals the baseline\'s in every epoch): '
                                     + ('**yes**.' if same else '**NO** — a bug: logging must not change training.'))
    return head + '\n\n' + table + check + '\n'


def run(out: Path, runs: Path, only: Sequence[str] | None = None, epochs: int = 3, quick: bool = False, progress: bool = True) -> list[dict]:
    "Train (or reuse) every chosen variant, measure it, and write deq_options.csv / deq_options.md under `out`."
    meta = dict(command=command_line(), started=time.strftime('%Y-%m-%d %H:%M:%S %Z'), cpu=cpu_model(),
                capability=torch.backends.cpu.get_cpu_capability(), load=os.getloadavg()[0],
                protocol=' '.join(protocol_args(epochs, quick)))
    proto = protocol_args(epochs, quick)
    rows = []
    for v in VARIANTS:
        if only and v.name not in only: continue
        r = run_variant(v, runs, proto, quick, epochs, progress)
        rows.append(measure(v, r, quick))
        if progress: print(f"  {v.name:11s} val NME {rows[-1]['val_nme']:.2f}%  ρ end median {rows[-1]['rho_end_median']:.2f}  "
                           f"{fmt(rows[-1]['step_seconds'], '.3f')} s/step", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / 'deq_options.csv')
    (out / 'deq_options.md').write_text(report(rows, meta))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = doc_parser(__doc__)
    ap.add_argument('--out', type=Path, default=Path('out/bench/deq_options'))
    ap.add_argument('--runs-dir', type=Path, default=None, help='where the runs go (default: runs/deq_options/<E>ep, or <E>ep-quick)')
    ap.add_argument('--only', default='', help=f"comma-separated variants (default: all of {','.join(v.name for v in VARIANTS)})")
    ap.add_argument('--epochs', type=int, default=3, help='epochs of every run (the side-by-side protocol: 3)')
    ap.add_argument('--quick', action='store_true', help='smoke test: 48 stills, 1 epoch, 8 validation images')
    a = ap.parse_args(argv)
    only = [s.strip() for s in a.only.split(',') if s.strip()]
    bad = sorted(set(only) - {v.name for v in VARIANTS})
    if bad: ap.error(f'--only: unknown variants {bad}; choose from {[v.name for v in VARIANTS]}')
    if a.epochs < 1: ap.error('--epochs must be >= 1')
    runs = a.runs_dir or Path('runs/deq_options') / (f'{1 if a.quick else a.epochs}ep' + ('-quick' if a.quick else ''))
    run(a.out, runs, only, a.epochs, a.quick)
    print(f"wrote {a.out / 'deq_options.csv'} and {a.out / 'deq_options.md'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
