"""Ship the demo models: copy trained checkpoints into ldeq/assets (weights and config only) and record their numbers.

After `ldeq-train --recipe demo_ldeq` (and demo_shg, demo_unet) have finished, run

    python tools/ship_demo_models.py [--runs runs] [--which last]

(`make demo-models` trains the three and then runs this.) For each model this loads `runs/demo_<name>/<which>.pt`
strictly, writes `ldeq/assets/demo_<name>.pt` without the optimiser / RNG state (a few MB), evaluates it on the whole
synthetic test split (NME, FR10, AUC10, mean solver steps), and writes everything to `ldeq/assets/demo_models.json`:
the full `TrainConfig` the run was trained with (read from the checkpoint, so the record cannot drift from the run),
the commands that regenerate the model, the per-epoch validation NME, the training time and the training images/s.

Training time: `train_seconds` is the wall clock of the whole run, including any time the process was paused
(SIGSTOP) or shared the cores; `median_epoch_seconds` is robust to such epochs, and `train_images_per_second` is the
epoch's training images over it (validation of 200 stills included). `tests/test_demo_models.py` checks the shipped
files against the record and that the three were trained alike.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

from ldeq.core.assets import assets_dir
from ldeq.models.baselines import n_parameters
from ldeq.models.checkpoint import load_checkpoint, save_checkpoint, kind_of
from ldeq.data.formats import open_stills
from ldeq.faces.synth import SYNTHETIC_VERSION, SyntheticConfig, ensure_synthetic
from ldeq.paper.results import SUBSET_COLUMNS, stills_nmes
from ldeq.training.train import evaluate, read_log_csv
from ldeq.video.tracking import model_input_size

DEMOS = {'ldeq': 'demo_ldeq', 'stacked_hourglass': 'demo_shg', 'unet': 'demo_unet'}
EVAL_BATCH = 32


def test_source(image_size: int):
    "The whole synthetic test split as crops of side `image_size` (generated on first use)."
    return open_stills(ensure_synthetic(parts=['test_stills']).wflw, 'test', size=image_size)


def dataset_label(n_test: int) -> str:
    "What the record was measured on, from the generator's own settings and the images actually evaluated."
    return f'{SYNTHETIC_VERSION} stills ({SyntheticConfig().stills.n_train} train / {n_test} test), ldeq.faces.synth defaults'


def measure_test_split(model) -> dict:
    "The test-split numbers of a model: NME, FR10, AUC10, solver steps on the whole split, and Table 1's NME (%) per attribute subset."
    torch.manual_seed(0)
    src = test_source(model_input_size(model))
    metrics = evaluate(model, src, batch_size=EVAL_BATCH, progress=True)
    nmes = stills_nmes(model, ensure_synthetic(parts=['test_stills'], progress=False).wflw, EVAL_BATCH, progress=False)
    subsets = {SUBSET_COLUMNS[s]: 100 * float(e.mean()) for s, e in nmes.items() if s != 'full'}
    return dict(images=len(src), eval_batch=EVAL_BATCH, **{k: float(v) for k, v in metrics.items()}, subsets_nme_percent=subsets,
                subset_images={SUBSET_COLUMNS[s]: len(e) for s, e in nmes.items() if s != 'full'})


def ship(kind: str, runs: Path, which: str, assets: Path) -> dict:
    "Copy one trained model into the assets and measure it."
    name = DEMOS[kind]
    src = runs / name / f'{which}.pt'
    lc = load_checkpoint(src)
    if lc.kind != kind: raise SystemExit(f'{src} holds a {lc.kind!r} model, expected {kind!r}')
    log = read_log_csv(runs / name / 'log.csv')
    tc = (lc.train_state or {}).get('train_config')
    if tc is None: raise SystemExit(f'{src} has no training state (train_config): ship a run checkpoint (last.pt / best.pt)')
    if len(log) != tc['epochs']: raise SystemExit(f'{runs / name / "log.csv"} has {len(log)} epochs, the run asks for {tc["epochs"]}: it has not finished')
    dst = assets / f'{name}.pt'                              # only a finished run replaces the shipped file
    save_checkpoint(dst, lc.model, lc.config, train_state=None)
    epoch_s = statistics.median(float(r['epoch_seconds']) for r in log)
    steps_per_epoch = int(log[-1]['global_step']) // len(log)
    return dict(kind=kind, file=dst.name, bytes=dst.stat().st_size, params=n_parameters(lc.model),
                preset=tc['preset'], recipe=name,
                command=f'ldeq-train --recipe {name} && python tools/ship_demo_models.py --which {which} --only {kind}',
                train_config=tc, checkpoint=which, epochs=len(log), train_seconds=float(log[-1]['total_seconds']),
                median_epoch_seconds=epoch_s, train_images_per_second=steps_per_epoch * tc['batch_size'] / epoch_s,
                val_nme_per_epoch=[float(r['val_nme']) for r in log],
                test=measure_test_split(lc.model))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--runs', default='runs', help='folder holding demo_ldeq/, demo_shg/, demo_unet/')
    ap.add_argument('--which', default='last', choices=['best', 'last'])
    ap.add_argument('--only', nargs='*', choices=list(DEMOS), help='ship only these kinds (others keep their record)')
    ap.add_argument('--note', help='how the runs were trained, when it is not visible in their records (kept in the record)')
    ap.add_argument('--record-only', action='store_true',
                    help='re-measure the shipped models on the current test split and update only their test numbers and the dataset label')
    ap.add_argument('--assets', default=str(assets_dir()),
                    help='where the models and demo_models.json go (default: the package assets)')
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    assets = Path(a.assets)
    assets.mkdir(exist_ok=True)
    rec_path = assets / 'demo_models.json'
    rec = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
    rec.setdefault('models', {})
    for kind in (a.only or DEMOS):
        if a.record_only:
            print(f'measuring the shipped {kind} …', flush=True)
            rec['models'][kind]['test'] = measure_test_split(load_checkpoint(assets / rec['models'][kind]['file']).model)
        else:
            print(f'shipping {kind} …', flush=True)
            rec['models'][kind] = ship(kind, Path(a.runs), a.which, assets)
        print(json.dumps(rec['models'][kind]['test']), flush=True)
    if not a.record_only: rec['machine'] = dict(platform=platform.platform(), torch=torch.__version__, threads=2)
    rec['dataset'] = dataset_label(next(iter(rec['models'].values()))['test']['images'])
    if a.note: rec['training_note'] = a.note
    rec['all_command'] = 'make demo-models   # the three recipes one after the other, then this tool with --which last'
    rec_path.write_text(json.dumps(rec, indent=1) + '\n')
    print(f'wrote {rec_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
