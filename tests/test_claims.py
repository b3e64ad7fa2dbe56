"""The README's headline RwR claims, tested fast on the quick clips (issue 30).

The quick clips are the first two hard and the first two easy clips of the recorded default selection
(`recorded_selection().head(2)`: the hard ones are the clips the CI's quick tables run evaluates), rendered here into a
temporary WFLW-V root (about 20 s). On them, with the shipped demo LDEQ:

- RwR lowers the hard clips' NMF at no more than +1% NME (ldeq's loop and the published one);
- RwR leaves the easy clips' NME and NMF within ±2%;
- the two RwR loops agree (NME and NMF within 0.1% of each other).

The claims are checked by `ldeq.paper.results.paper_claims`, the function the tables notebook uses, and once by hand from
the per-method means, so that a bug in either shows. Table 1's claim is tested on the whole test set in test_demo_models.py.
"""
import pytest
import torch

from ldeq.core.assets import demo_checkpoints
from ldeq.faces.synth import generate_videos, recorded_selection
from ldeq.models.checkpoint import load_model
from ldeq.paper.results import paper_claims
from ldeq.video.evaluate import evaluate_methods
from ldeq.video.methods import RwR

METHODS = ['frame-by-frame', RwR(2), RwR.published(2)]


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
    "Per subset, the summary table of the three methods on the quick clips, and the long table paper_claims reads."
    root = generate_videos(tmp_path_factory.mktemp('quick') / 'wflw_v', recorded_selection().head(2), workers=2, progress=False)
    torch.set_num_threads(2)
    model = load_model(demo_checkpoints()['ldeq'])
    out = {}
    for s in ('hard', 'easy'):
        table, _ = evaluate_methods(model, root, s, METHODS, batch_size=2, progress=False)
        out[s] = table.set_index('method')
    import pandas as pd
    long = pd.concat([t.reset_index().assign(model='LDEQ', subset=s) for s, t in out.items()], ignore_index=True)
    return out, long


def change(t, method, col):
    return 100 * (t.loc[method, col] / t.loc['frame-by-frame', col] - 1)


@pytest.mark.parametrize('method', ['rwr:2', 'rwr:2,0,capped'])
def test_rwr_lowers_hard_nmf_without_costing_nme(quick, method):
    t = quick[0]['hard']
    assert change(t, method, 'nmf') < 0 and change(t, method, 'nme') <= 1, t


@pytest.mark.parametrize('method', ['rwr:2', 'rwr:2,0,capped'])
def test_rwr_leaves_easy_clips_within_2_percent(quick, method):
    t = quick[0]['easy']
    assert abs(change(t, method, 'nme')) <= 2 and abs(change(t, method, 'nmf')) <= 2, t


@pytest.mark.parametrize('subset', ['hard', 'easy'])
def test_the_two_rwr_loops_agree(quick, subset):
    t = quick[0][subset]
    for col in ('nme', 'nmf'):
        assert abs(t.loc['rwr:2', col] / t.loc['rwr:2,0,capped', col] - 1) <= 1e-3, t


def test_paper_claims_agree(quick):
    "The tables notebook's own check of the same claims (Fig. 5 needs the baselines' EMA rows: not stated here)."
    claims = [c for c in paper_claims(None, quick[1], ['hard', 'easy']) if 'EMA curve' not in c.text]
    assert len(claims) == 6 and all(c.holds for c in claims), [c.line() for c in claims]
