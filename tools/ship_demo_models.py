"""Ship the demo models: copy trained checkpoints into ldeq/assets (weights and config only) and record their numbers.

After `ldeq-train --recipe demo_ldeq` (and demo_shg, demo_unet) have finished, run

    python tools/ship_demo_models.py [--runs runs] [--which best]

For each model this loads `runs/demo_<name>/<which>.pt` strictly, writes `ldeq/assets/demo_<name>.pt` without the
optimiser / RNG state (a few MB), evaluates it on the whole synthetic test split (NME, FR10, AUC10, mean solver steps),
and writes everything, with the training time from `log.csv` and the command that regenerates the model, to
`ldeq/assets/demo_models.json`. `tests/test_demo_models.py` checks the shipped files against that record.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

import ldeq
from ldeq.baselines import n_parameters
from ldeq.checkpoint import load_checkpoint, save_checkpoint, kind_of
from ldeq.data import open_stills
from ldeq.synth import ensure_synthetic
from ldeq.train import evaluate, read_log_csv
from ldeq.tracking import model_input_size

DEMOS = {'ldeq': 'demo_ldeq', 'stacked_hourglass': 'demo_shg', 'unet': 'demo_unet'}
EVAL_BATCH = 32


def test_source(image_size: int):
    "The whole synthetic test split as crops of side `image_size` (generated on first use)."
    return open_stills(ensure_synthetic(parts=['stills']).wflw, 'test', size=image_size)


def ship(kind: str, runs: Path, which: str, assets: Path) -> dict:
    "Copy one trained model into the assets and measure it."
    name = DEMOS[kind]
    src = runs / name / f'{which}.pt'
    lc = load_checkpoint(src)
    if lc.kind != kind: raise SystemExit(f'{src} holds a {lc.kind!r} model, expected {kind!r}')
    dst = assets / f'{name}.pt'
    save_checkpoint(dst, lc.model, lc.config, train_state=None)
    log = read_log_csv(runs / name / 'log.csv')
    torch.manual_seed(0)
    metrics = evaluate(lc.model, test_source(model_input_size(lc.model)), batch_size=EVAL_BATCH, progress=True)
    return dict(kind=kind, file=dst.name, bytes=dst.stat().st_size, params=n_parameters(lc.model),
                preset='small', command=f'ldeq-train --recipe {name} && python tools/ship_demo_models.py',
                checkpoint=which, epochs=len(log), train_seconds=float(log[-1]['total_seconds']),
                val_nme_per_epoch=[float(r['val_nme']) for r in log],
                test=dict(images=1000, eval_batch=EVAL_BATCH, **{k: float(v) for k, v in metrics.items()}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--runs', default='runs', help='folder holding demo_ldeq/, demo_shg/, demo_unet/')
    ap.add_argument('--which', default='best', choices=['best', 'last'])
    ap.add_argument('--only', nargs='*', choices=list(DEMOS), help='ship only these kinds (others keep their record)')
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    assets = Path(ldeq.__file__).parent / 'assets'
    assets.mkdir(exist_ok=True)
    rec_path = assets / 'demo_models.json'
    rec = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
    rec.setdefault('models', {})
    for kind in (a.only or DEMOS):
        print(f'shipping {kind} …', flush=True)
        rec['models'][kind] = ship(kind, Path(a.runs), a.which, assets)
        print(json.dumps(rec['models'][kind]['test']), flush=True)
    rec['machine'] = dict(platform=platform.platform(), torch=torch.__version__, threads=2)
    rec['dataset'] = 'synthetic-v1 stills (5000 train / 1000 test), ldeq.synth defaults'
    rec_path.write_text(json.dumps(rec, indent=1) + '\n')
    print(f'wrote {rec_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
