"""How the notebooks read: the share of exported cells directly followed by a test cell, and exported cell sizes.

A test cell is a code cell right after an exported one (markdown in between breaks the pair) that is not exported itself
and contains `assert`, `test_`, `raise AssertionError` or a call of a `test_*` helper. Usage: python tools/cell_stats.py [--per-notebook]
"""
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = re.compile(r'\bassert\b|\btest_\w*\(|raise AssertionError')


def cells(nb_path):
    "The code and markdown cells of a notebook as (kind, source) pairs."
    nb = json.loads(Path(nb_path).read_text())
    return [(c['cell_type'], ''.join(c['source'])) for c in nb['cells']]


def is_export(kind, s): return kind == 'code' and re.match(r'\s*#\|\s*export', s) is not None


def is_test(kind, s): return kind == 'code' and not is_export(kind, s) and TEST.search(s) is not None


def notebook_stats(nb_path) -> dict:
    "Exported cells, how many are directly followed by a test cell, and their line counts (without the #| line)."
    cs = cells(nb_path)
    exp = [i for i, (k, s) in enumerate(cs) if is_export(k, s) and 'from __future__' not in s]
    followed = sum(1 for i in exp if i + 1 < len(cs) and is_test(*cs[i + 1]))
    sizes = [len([l for l in cs[i][1].splitlines() if l.strip() and not l.lstrip().startswith('#|')]) for i in exp]
    return dict(notebook=str(Path(nb_path).relative_to(ROOT)), exported=len(exp), followed=followed, sizes=sizes)


def main():
    nbs = sorted(p for p in (ROOT / 'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
    st = [notebook_stats(p) for p in nbs]
    st = [s for s in st if s['exported']]
    n, f = sum(s['exported'] for s in st), sum(s['followed'] for s in st)
    sizes = [x for s in st for x in s['sizes']]
    if '--per-notebook' in sys.argv:
        for s in st: print(f"{s['notebook']:45s} {s['followed']:3d}/{s['exported']:3d} followed, median {statistics.median(s['sizes']):5.1f} lines, max {max(s['sizes'])}")
    print(f'exported cells (imports excluded): {n}; directly followed by a test cell: {f} ({100 * f / n:.0f}%); '
          f'median size {statistics.median(sizes):.0f} lines, largest {max(sizes)}')


if __name__ == '__main__':
    main()
