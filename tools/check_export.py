"""Fail if `ldeq/` is not exactly what `nbdev_export` makes of `nbs/`, or if a notebook is not clean."""
import sys
from pathlib import Path

from nbdev.clean import nbdev_clean
from nbdev.doclinks import nbdev_export

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder, pattern):
    "Map each file under `folder` matching `pattern` to its bytes."
    return {p.relative_to(ROOT): p.read_bytes() for p in sorted((ROOT / folder).rglob(pattern))}


def changed(before, after):
    "Paths added, removed or modified between two snapshots."
    return sorted(str(p) for p in set(before) | set(after) if before.get(p) != after.get(p))


def main():
    lib0, nbs0 = snapshot('ldeq', '*.py'), snapshot('nbs', '*.ipynb')
    nbdev_export()
    nbdev_clean()
    lib1, nbs1 = snapshot('ldeq', '*.py'), snapshot('nbs', '*.ipynb')
    bad_lib, bad_nbs = changed(lib0, lib1), changed(nbs0, nbs1)
    if bad_lib: print('ldeq/ was out of step with nbs/ (now re-exported, commit it):', *bad_lib, sep='\n  ')
    if bad_nbs: print('notebooks were not clean (now cleaned, commit them):', *bad_nbs, sep='\n  ')
    if bad_lib or bad_nbs: sys.exit(1)
    print(f'export check: ldeq/ matches nbs/ ({len(lib1)} modules), {len(nbs1)} notebooks clean')


if __name__ == '__main__':
    main()
