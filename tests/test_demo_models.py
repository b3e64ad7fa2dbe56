"""The shipped demo models (issues 5 and 13): trained alike, they load strictly and reproduce their recorded numbers.

The record `ldeq/assets/demo_models.json` is written by `tools/ship_demo_models.py` right after training (`make
demo-models`), with each run's full TrainConfig read from its checkpoint. These tests check that the three were trained
under one protocol (every shared TrainConfig field equal, `DEMO_PROTOCOL` finished, parameter counts within 3%), that
each file loads strictly, and evaluate the shipped checkpoints on the whole synthetic test split (generated into the
cache on first use) against the recorded NME (within 1%, relative), FR10 and AUC10.
"""
import json
from pathlib import Path

import pytest
import torch

from ldeq.core.assets import assets_dir
from ldeq.models.baselines import n_parameters
from ldeq.models.checkpoint import load_model
from ldeq.models.checkpoint import CheckpointError, load_checkpoint, safe_torch_load

ASSETS = assets_dir()
RECORD = ASSETS / 'demo_models.json'
KINDS = ('ldeq', 'stacked_hourglass', 'unet')


def _record() -> dict:
    assert RECORD.is_file(), f'{RECORD} is missing: run tools/ship_demo_models.py after training the demo models'
    return json.loads(RECORD.read_text())['models']


# The settings a demo recipe may choose for itself: the model and what only makes its steps cheaper (issue 13). Every
# other TrainConfig field (data, augmentation, epochs, batch, optimiser, schedule, seed, ...) is the shared protocol.
OWN_SETTINGS = {'model', 'backward', 'solver_iters', 'train_solver_iters', 'n_stacks', 'memory_format', 'precision',
                'out_dir'}


def test_record_lists_every_model_with_comparable_size():
    rec = _record()
    assert set(rec) == set(KINDS)
    sizes = [rec[k]['params'] for k in KINDS]
    assert max(sizes) / min(sizes) <= 1.03, f'parameter counts are not within 3% of each other: {sizes}'


def test_demo_models_were_trained_alike():
    "One protocol: the shipped runs agree on every shared TrainConfig field, finished it, and match DEMO_PROTOCOL."
    from ldeq.training.train import DEMO_PROTOCOL, RECIPES, RESUMABLE_CHANGES
    rec = _record()
    cfgs = {k: rec[k]['train_config'] for k in KINDS}
    shared = sorted(set(cfgs['ldeq']) - OWN_SETTINGS - set(RESUMABLE_CHANGES))   # those may change on --resume
    differ = {f: {k: cfgs[k][f] for k in KINDS} for f in shared if len({repr(cfgs[k][f]) for k in KINDS}) > 1}
    assert not differ, f'the demo models were not trained alike: {differ}'
    for k in KINDS:
        assert rec[k]['epochs'] == cfgs[k]['epochs'] >= 30 and len(rec[k]['val_nme_per_epoch']) == rec[k]['epochs']
        for name, want in (('DEMO_PROTOCOL', DEMO_PROTOCOL), (rec[k]['recipe'], RECIPES[rec[k]['recipe']])):
            got = {f: cfgs[k][f] for f in want if f not in RESUMABLE_CHANGES}
            assert got == {f: v for f, v in want.items() if f not in RESUMABLE_CHANGES}, f'{k}: the record is not today\'s {name}'


@pytest.mark.parametrize('kind', KINDS)
def test_demo_checkpoint_loads_strictly(kind, tmp_path):
    rec = _record()[kind]
    path = ASSETS / rec['file']
    assert path.stat().st_size < 20 * 2 ** 20, 'a demo checkpoint should be a few MB'
    # strict keys and shapes, and the `small` preset's architecture (solver settings are the training recipe's)
    lc = load_checkpoint(path, expect='small', ignore=('deq',))
    assert lc.kind == kind and n_parameters(lc.model) == rec['params']
    assert lc.train_state is None                        # weights and config only
    # a state dict missing one key is refused (the loading really is strict)
    ck = safe_torch_load(path)
    ck['state_dict'].pop(next(iter(ck['state_dict'])))
    torch.save(ck, tmp_path / 'bad.pt')
    with pytest.raises(CheckpointError, match='missing'): load_checkpoint(tmp_path / 'bad.pt')


@pytest.mark.parametrize('kind', KINDS)
def test_demo_model_reproduces_recorded_metrics(kind):
    "The whole synthetic test split: NME, FR10, AUC10 and Table 1's NME on each attribute subset, as recorded (NME within 1%)."
    from ldeq.faces.synth import ensure_synthetic
    from ldeq.core.metrics import auc, failure_rate
    from ldeq.paper.results import SUBSET_COLUMNS, stills_nmes
    rec = _record()[kind]
    torch.set_num_threads(2)
    model = load_model(ASSETS / rec['file'])
    nmes = stills_nmes(model, ensure_synthetic(parts=['test_stills'], progress=False).wflw, rec['test']['eval_batch'], progress=False)
    e = nmes['full']
    assert len(e) == rec['test']['images']
    assert abs(e.mean() / rec['test']['nme'] - 1) <= 0.01, (e.mean(), rec['test'])
    assert abs(failure_rate(e) - rec['test']['fr10']) <= 0.01 and abs(auc(e) - rec['test']['auc10']) <= 0.01, rec['test']
    got = {SUBSET_COLUMNS[s]: 100 * float(v.mean()) for s, v in nmes.items() if s != 'full'}
    assert set(got) == set(rec['test']['subsets_nme_percent'])
    for s, want in rec['test']['subsets_nme_percent'].items():
        assert abs(got[s] / want - 1) <= 0.01 and len(nmes[next(k for k, c in SUBSET_COLUMNS.items() if c == s)]) == rec['test']['subset_images'][s], (s, got[s], want)


def test_table1_claim_holds_on_the_record():
    "Table 1's claim as the README states it: the LDEQ has the lowest recorded NME on the full set and on every attribute subset."
    rec = _record()
    for k in KINDS[1:]:
        assert rec['ldeq']['test']['nme'] < rec[k]['test']['nme'], k
        for s, v in rec['ldeq']['test']['subsets_nme_percent'].items(): assert v < rec[k]['test']['subsets_nme_percent'][s], (k, s)
