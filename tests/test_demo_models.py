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
    from ldeq.data.formats import open_stills
    from ldeq.faces.synth import ensure_synthetic
    from ldeq.training.train import evaluate
    from ldeq.video.tracking import model_input_size
    rec = _record()[kind]
    torch.set_num_threads(2)
    model = load_model(ASSETS / rec['file'])
    src = open_stills(ensure_synthetic(parts=['test_stills'], progress=False).wflw, 'test', size=model_input_size(model))
    assert len(src) == rec['test']['images']
    m = evaluate(model, src, batch_size=rec['test']['eval_batch'])
    assert abs(m['nme'] / rec['test']['nme'] - 1) <= 0.01, (m, rec['test'])
    assert abs(m['fr10'] - rec['test']['fr10']) <= 0.01 and abs(m['auc10'] - rec['test']['auc10']) <= 0.01, (m, rec['test'])
