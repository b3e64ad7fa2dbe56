"""The power benchmark's pieces (benchmarks/video_power.py, issue 28): pairing, intervals, the clips a target needs, reuse of selections."""
import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.video_power import block_selection, clip_rows, clips_needed, half_width, power_table, target_met
from ldeq.faces.synth import PoolConfig
from ldeq.video.evaluate import paired_change
from ldeq.video.selection import Selection, SelectionConfig


def _clips(seed, block, nmf_fbf, factor, start=0):
    n = len(nmf_fbf)
    return pd.DataFrame(dict(seed=seed, block=block, id=[f'pool_{block * 400 + start + i:04d}' for i in range(n)], frames=100,
                             nme_fbf=10.0, nmf_fbf=nmf_fbf, nme_rwr=9.9, nmf_rwr=np.asarray(nmf_fbf) * factor))


def test_power_table_exact_change_has_no_width():
    rng = np.random.default_rng(0)
    t = power_table(pd.concat([_clips(0, 0, rng.lognormal(6, 1, 50), 0.8), _clips(0, 1, rng.lognormal(6, 1, 50), 0.8)]), n_boot=500)
    assert t['clips'].tolist() == [50, 100] and t['blocks'].tolist() == [1, 2]
    assert np.allclose(t['nmf_change'], -20) and np.allclose(t['nmf_half_width'], 0, atol=1e-9)
    assert np.allclose(t['nme_change'], -1) and t['within_target'].all() and t['clips_needed'].tolist() == [50, 100]


def test_power_table_matches_paired_change_and_narrows():
    rng = np.random.default_rng(1)
    blocks = [_clips(3, b, rng.lognormal(6, 1, 100), 1.0) for b in range(4)]
    for d in blocks: d['nmf_rwr'] = d['nmf_fbf'] * np.where(rng.random(len(d)) < 0.1, 0.2, 1.0)   # a few clips carry the change
    t = power_table(pd.concat(blocks), n_boot=2000)
    first = blocks[0]
    c = paired_change(first[['id', 'nmf_fbf']].rename(columns={'nmf_fbf': 'nmf'}), first[['id', 'nmf_rwr']].rename(columns={'nmf_rwr': 'nmf'}),
                      'nmf', 2000)
    assert t['nmf_change'].iloc[0] == pytest.approx(c['change']) and t['nmf_half_width'].iloc[0] == pytest.approx(half_width(c))
    assert t['nmf_half_width'].iloc[-1] < t['nmf_half_width'].iloc[0]                 # 400 clips: a narrower interval than 100
    assert t['clips_needed'].iloc[0] == clips_needed(100, t['nmf_half_width'].iloc[0])


def test_target_met_on_the_last_block():
    rng = np.random.default_rng(2)
    assert target_met(_clips(0, 0, rng.lognormal(6, 1, 40), 0.8), n_boot=200)              # an exact change: width 0
    d = _clips(0, 0, rng.lognormal(6, 1, 40), 1.0)
    d['nmf_rwr'] = d['nmf_fbf'] * np.where(np.arange(40) < 4, 0.1, 1.0)                      # 4 clips carry a large cut
    assert not target_met(d, n_boot=500)


def test_power_table_needs_blocks_from_zero():
    with pytest.raises(ValueError, match='blocks'):
        power_table(_clips(0, 1, [1.0, 2.0], 0.5), n_boot=10)


def test_clips_needed_and_half_width():
    assert clips_needed(100, 5.7) == 361 and clips_needed(100, 2.0) == 100 and clips_needed(100, 6.0) == 400
    assert half_width(dict(change=-18.6, lo=-24.2, hi=-12.7)) == pytest.approx(5.9)   # the larger side, not the mean of both


def test_clip_rows_pairs_by_id():
    fbf = pd.DataFrame(dict(id=['a', 'b'], frames=[5, 5], nme=[1.0, 2.0], nmf=[10.0, 20.0]))
    rwr = pd.DataFrame(dict(id=['b', 'a'], frames=[5, 5], nme=[1.5, 0.5], nmf=[15.0, 5.0]))
    sel = Selection(SelectionConfig(PoolConfig(n_pool=8)), (0, 1), (2, 3), [dict(clip_id='a', spread=9.0), dict(clip_id='b', spread=8.0)], [])
    t = clip_rows(sel, fbf, rwr, 2, 0)
    assert t['nmf_rwr'].tolist() == [5.0, 15.0] and t['spread'].tolist() == [9.0, 8.0] and (t['seed'] == 2).all()
    with pytest.raises(ValueError):
        clip_rows(sel, fbf, rwr.iloc[:1], 2, 0)


def test_block_selection_reuses_a_file_with_its_settings(tmp_path):
    cfg = SelectionConfig(PoolConfig(seed=5, block=1))
    scores = [dict(index=i, clip_id=f'pool_{400 + i:04d}', difficulty=i / 400, events='', score=float(i), spread=float(i)) for i in range(4)]
    src = Selection(cfg, (3, 2), (0, 1), scores, ['v1_ldeq.pt']).save(tmp_path / 'old.json')
    Selection(SelectionConfig(PoolConfig(seed=5, block=2)), (3,), (0,), scores, []).save(tmp_path / 'other.json')
    sel = block_selection(5, 1, tmp_path / 'out', reuse=[tmp_path / 'other.json', src], progress=False)
    assert sel.hard == (3, 2) and sel.config == cfg
    assert (tmp_path / 'out' / 'selections' / 'seed5_block1.json').is_file()           # kept with the results
    assert math.isclose(Selection.load(tmp_path / 'out' / 'selections' / 'seed5_block1.json').scores[3]['spread'], 3.0)
