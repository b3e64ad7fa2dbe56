#!/usr/bin/env python
"""The learning curves of the three demo models in one figure (issue 13): validation NME and training loss per epoch,
read from runs/<recipe>/log.csv (a run still training shows the epochs it has finished).

    python tools/plot_demo_curves.py [--runs runs] [--out docs/img/demo_learning_curves.png]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

RECIPES = {'demo_ldeq': 'LDEQ', 'demo_shg': 'Stacked-Hourglass', 'demo_unet': 'UNet'}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--runs', default='runs'); ap.add_argument('--out', default='docs/img/demo_learning_curves.png')
    a = ap.parse_args(argv)
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from ldeq.train import read_log_csv
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    found = []
    for recipe, label in RECIPES.items():
        log = Path(a.runs) / recipe / 'log.csv'
        if not log.is_file(): continue
        h = read_log_csv(log)
        ep = [r['epoch'] + 1 for r in h]
        ax[0].plot(ep, [100 * r['val_nme'] for r in h], 'o-', ms=3, label=f'{label} ({len(h)} epochs)')
        ax[1].plot(ep, [r['train_loss'] for r in h], 'o-', ms=3, label=label)
        found.append(f'{label}: {len(h)} epochs, last validation NME {100 * h[-1]["val_nme"]:.2f}%')
    if not found: raise SystemExit(f'no runs/<recipe>/log.csv under {a.runs} for {list(RECIPES)}')
    ax[0].set(xlabel='epoch', ylabel='validation NME (%), 200 test stills', yscale='log', title='one protocol (DEMO_PROTOCOL)')
    ax[1].set(xlabel='epoch', ylabel='training loss (each model its own)', yscale='log')
    for x in ax: x.grid(alpha=0.3, which='both')
    ax[0].legend()
    fig.tight_layout()
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print('\n'.join(found)); print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
