"""ldeq-fetch-wflwv offline: synthetic sources whose frames spell their own index, served from 127.0.0.1 through yt-dlp's
generic extractor (the same path as YouTube), with a fake download list; exact cuts, every status of the report, retries,
kill -9 and resume, bad inputs. Nothing is fetched from anywhere but 127.0.0.1."""
import collections
import fcntl
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ldeq.data.fetch_wflwv import (PROGRESSIVE, FORMAT_SORT, STATE, FetchConfig, fetch_wflwv, index_pattern, main,
                                   read_index_pattern)
from ldeq.data.formats import wflwv_coverage, write_mp4v
from ldeq.data.videoio import read_frames, video_info

ROOT = Path(__file__).resolve().parents[1]


class Web:
    "A local HTTP server of video files: unknown names are 404, `broken[name]` truncated bodies are served before the real one."
    def __init__(self, files: dict, broken: dict | None = None, delay: float = 0.0):
        self.files, self.broken, self.delay, self.hits = files, dict(broken or {}), delay, collections.Counter()
        web = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a): pass

            def do_GET(self):
                name = self.path.lstrip('/')
                web.hits[name] += 1
                time.sleep(web.delay)
                if name not in web.files:
                    self.send_error(404, 'File not found'); return
                body = web.files[name]
                if web.broken.get(name, 0) > 0:
                    web.broken[name] -= 1
                    body = body[:len(body) // 2]            # a complete response of a truncated file: only decoding can tell
                self.send_response(200)
                self.send_header('Content-Type', 'video/mp4')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, address):        # yt-dlp's probe hangs up after the headers: not an error
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)): super().handle_error(request, address)

        self.server = Server(('127.0.0.1', 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def template(self) -> str: return f'http://127.0.0.1:{self.server.server_address[1]}/{{id}}.mp4'

    def __enter__(self): self.thread.start(); return self
    def __exit__(self, *a): self.server.shutdown(); self.server.server_close()


def source_bytes(tmp: Path, n: int, height: int = 64, width: int = 128, fps: float = 25.0) -> bytes:
    "An mp4v source of `n` frames spelling 0 … n-1."
    p = tmp / f'src_{n}_{height}x{width}.mp4'
    if not p.exists(): write_mp4v(p, (index_pattern(i, height, width) for i in range(n)), fps)
    return p.read_bytes()


def annotate(folder: Path, vid: str, n: int, scale: float = 1.0, height: int = 64, width: int = 128):
    "Landmarks (and boxes) of `n` frames inside a width × height frame, times `scale`."
    lm = np.random.default_rng(abs(hash(vid)) % 2**32).uniform(8, min(height, width) - 8, (n, 98, 2)) * scale
    for sub, a in (('landmarks', lm), ('bboxes', np.concatenate([lm.min(1), lm.max(1)], 1))):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        np.save(folder / sub / f'{vid}.npy', a)


def fixture(tmp: Path, clips, hard=(), easy=()) -> tuple[Path, dict]:
    "clips: (id, start, end, source frames or None for a 404, annotated frames, annotation scale); returns (list path, files)."
    files = {}
    for vid, s, e, n_src, n_ann, scale in clips:
        if n_src is not None: files[f'{vid}.mp4'] = source_bytes(tmp, n_src)
        annotate(tmp / 'ann', vid, n_ann, scale)
    lst = tmp / 'pub' / 'download_ranges.txt'
    lst.parent.mkdir(parents=True, exist_ok=True)
    lst.write_text(''.join(f'{v} {s} {e}\n' for v, s, e, *_ in clips))
    for name, ids in (('hard', hard), ('easy', easy)):
        if ids: (lst.parent / f'{name}_video_IDs.txt').write_text(''.join(i + '\n' for i in ids))
    return lst, files


def indices(path: Path) -> list[int]:
    return [read_index_pattern(f) for f in read_frames(path)]


def tree(root: Path) -> dict:
    "Relative path → SHA-256 of every file under `root`."
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob('*')) if p.is_file()}


CLIPS = [  # id, start, end, source frames (None: 404), annotated frames, annotation scale
    ('okA', 0, 9, 10, 10, 1.0),        # the range ends on the source's last frame
    ('okB', 5, 24, 30, 20, 1.0),
    ('okC', 17, 17, 20, 1, 1.0),       # a single frame
    ('gone', 0, 9, None, 10, 1.0),     # 404: unavailable
    ('flaky', 2, 11, 16, 10, 1.0),     # truncated twice (yt-dlp's probe and download), then whole: ok on a retry
    ('corrupt', 0, 9, 16, 10, 1.0),    # truncated every time: failed after the retries
    ('short', 5, 19, 12, 15, 1.0),     # the source has 12 frames, the range needs 20: mismatch
    ('listmis', 0, 9, 10, 11, 1.0),    # the list keeps 10 frames, 11 are annotated: mismatch, nothing downloaded
    ('big', 0, 9, 10, 10, 2.0),        # annotated on a frame twice as large: mismatch
]


def test_fetch_statuses_cuts_and_report(tmp_path):
    lst, files = fixture(tmp_path, CLIPS, hard=['okA', 'okB', 'gone', 'corrupt', 'short'], easy=['okC', 'flaky', 'listmis', 'big', 'extra'])
    with Web(files, broken={'flaky.mp4': 2, 'corrupt.mp4': 99}) as web:
        cfg = FetchConfig(lst, tmp_path / 'root', tmp_path / 'ann' / 'landmarks', tmp_path / 'ann' / 'bboxes',
                          url_template=web.template, workers=3, retries=2, backoff=0.01, progress=False)
        rep = fetch_wflwv(cfg)
    rows = {r.id: r for r in rep.rows}
    assert [r.id for r in rep.rows] == [c[0] for c in CLIPS]                                    # list order
    assert {k: r.status for k, r in rows.items()} == dict(okA='ok', okB='ok', okC='ok', gone='unavailable', flaky='ok', corrupt='failed',
                                                          short='mismatch', listmis='mismatch', big='mismatch')
    videos = tmp_path / 'root' / 'videos'
    for vid, s, e, *_ in CLIPS:                                                                  # exact first and last frames
        if rows[vid].status == 'ok':
            got = indices(videos / f'{vid}.mp4')
            assert got[0] == s and got[-1] == e and got == list(range(s, e + 1)), (vid, got)
            info = video_info(videos / f'{vid}.mp4')
            assert (info.width, info.height, info.fps) == (128, 64, 25.0)                     # the source's size and rate, kept
    assert sorted(p.name for p in videos.iterdir()) == ['flaky.mp4', 'okA.mp4', 'okB.mp4', 'okC.mp4']   # nothing else, no partial file
    assert not (tmp_path / 'root' / STATE / 'tmp').exists()
    assert rows['gone'].attempts == 1 and 'HTTP Error 404' in rows['gone'].detail                # gone: not retried
    assert rows['flaky'].attempts >= 2 and web.hits['flaky.mp4'] >= 2                             # retried, then whole
    assert rows['corrupt'].attempts == 3 and rows['corrupt'].detail.startswith('after 3 attempts:')
    assert 'the source has 12 frames; the range 5..19 needs 20' in rows['short'].detail
    assert 'keeps 10 frames, 11 are annotated' in rows['listmis'].detail and web.hits['listmis.mp4'] == 0
    assert 'the landmarks span' in rows['big'].detail and '128x64' in rows['big'].detail and 'nothing rescaled' in rows['big'].detail
    assert rep.counts() == dict(ok=4, unavailable=1, mismatch=3, failed=1)
    from ldeq.data.formats import coverage_line
    assert coverage_line(rep.coverage) == 'hard 2/5, easy 2/5'
    assert rep.coverage[1].missing['extra'].startswith('not in the download list')
    # the root is a WFLW-V root the evaluation reads, with the same coverage
    assert [wflwv_coverage(tmp_path / 'root', s).line() for s in ('hard', 'easy')] == ['hard 2/5', 'easy 2/5']
    csv_rows = (tmp_path / 'root' / 'fetch_report.csv').read_text().splitlines()
    assert len(csv_rows) == 1 + len(CLIPS) and csv_rows[1].startswith('okA,hard,ok,0,9,10,10,128,64,25.0,mp4: mp4,1,')
    md = (tmp_path / 'root' / 'fetch_report.md').read_text()
    assert '**Coverage: hard 2/5, easy 2/5**' in md and 'Status: ok 4, unavailable 1, mismatch 3, failed 1.' in md
    # a second run fetches nothing again: verified videos are skipped, the rest retried, the report the same
    with Web(files) as web2:
        rep2 = fetch_wflwv(FetchConfig(lst, tmp_path / 'root', tmp_path / 'ann' / 'landmarks', tmp_path / 'ann' / 'bboxes',
                                       url_template=web2.template, workers=2, retries=0, progress=False))
    assert [web2.hits[f'{v}.mp4'] for v in ('okA', 'okB', 'okC', 'flaky')] == [0, 0, 0, 0]
    assert {r.id: r.status for r in rep2.rows}['corrupt'] == 'ok'                               # served whole this time


def test_progressive_format_choice():
    "The default selector takes the highest-resolution stream holding video and audio in one HTTP file, as pytube's get_highest_resolution."
    import yt_dlp
    def fmt(fid, h, v='avc1', a='mp4a', proto='https', ext='mp4'):
        return dict(format_id=fid, url=f'https://example.invalid/{fid}', ext=ext, height=h, width=h and h * 16 // 9, vcodec=v, acodec=a, protocol=proto)
    formats = [fmt('18', 360), fmt('22', 720), fmt('137', 1080, a='none'), fmt('140', None, v='none'), fmt('96', 1080, proto='m3u8_native'),
               fmt('43', 360, v='vp8', a='vorbis', ext='webm')]
    def choose(fs):
        with yt_dlp.YoutubeDL(dict(format=PROGRESSIVE, format_sort=list(FORMAT_SORT), quiet=True, simulate=True)) as y:
            info = y.process_ie_result(dict(id='x', title='x', formats=fs, extractor='youtube', extractor_key='Youtube',
                                            webpage_url='https://example.invalid/x'), download=False)
        return info['format_id']
    assert choose(formats) == '22'                                                   # 720p progressive, not 1080p video-only or HLS
    assert choose([f for f in formats if f['format_id'] != '22']) == '18'            # where 720p progressive is gone: 360p


def test_kill_and_resume_gives_the_same_tree(tmp_path):
    clips = [(f'k{i}', i, i + 7, 12, 8, 1.0) for i in range(7)] + [('kgone', 0, 7, None, 8, 1.0), ('kshort', 0, 11, 8, 12, 1.0)]
    lst, files = fixture(tmp_path, clips, hard=[c[0] for c in clips[:5]], easy=[c[0] for c in clips[5:]])
    root = tmp_path / 'root'
    args = [str(lst), str(root), '--landmarks', str(tmp_path / 'ann' / 'landmarks'), '--bboxes', str(tmp_path / 'ann' / 'bboxes'),
            '--workers', '2', '--retries', '0', '--no-progress']
    with Web(files, delay=0.25) as web:
        args += ['--url-template', web.template]
        assert main(args) == 0                                                        # an uninterrupted reference run
        reference = tree(root)
        os.rename(root, tmp_path / 'reference')
        env = dict(os.environ, OMP_NUM_THREADS='1')
        proc = subprocess.Popen([sys.executable, '-c', 'import sys; from ldeq.data.fetch_wflwv import main; sys.exit(main(sys.argv[1:]))', *args],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and len(list((root / 'videos').glob('*.mp4')) if (root / 'videos').is_dir() else []) < 2:
            time.sleep(0.02)
        proc.kill(); proc.wait()                                                      # kill -9 in the middle of the run
        left = sorted(p.name for p in (root / 'videos').iterdir())
        assert 2 <= len(left) < 7, left
        for name in left:                                                             # what is there is whole and recorded
            assert len(indices(root / 'videos' / name)) == 8 and (root / STATE / 'verified' / name.replace('.mp4', '.json')).is_file()
        hits_before = dict(web.hits)
        assert main(args) == 0                                                        # resume
        assert all(web.hits[n] == hits_before[n] for n in left)                       # verified videos not fetched again
    assert tree(root) == reference                                                    # same files, same bytes, same report


def test_existing_videos_are_verified_not_overwritten(tmp_path):
    clips = [('e1', 2, 9, 12, 8, 1.0), ('e2', 0, 7, 12, 8, 1.0)]
    lst, files = fixture(tmp_path, clips)
    root = tmp_path / 'root'
    (root / 'videos').mkdir(parents=True)
    write_mp4v(root / 'videos' / 'e1.mp4', (index_pattern(i) for i in range(2, 10)), 25.0)    # a good copy from elsewhere
    write_mp4v(root / 'videos' / 'e2.mp4', (index_pattern(i) for i in range(5)), 25.0)        # a bad one: 5 frames for 8
    with Web(files) as web:
        rep = fetch_wflwv(FetchConfig(lst, root, tmp_path / 'ann' / 'landmarks', tmp_path / 'ann' / 'bboxes', url_template=web.template,
                                      workers=1, progress=False))
    assert [(r.status, r.source) for r in rep.rows] == [('ok', 'existing file'), ('ok', 'mp4: mp4')]
    assert web.hits['e1.mp4'] == 0 and (root / STATE / 'rejected' / 'e2.mp4').is_file() and indices(root / 'videos' / 'e2.mp4') == list(range(8))
    assert not (tmp_path / 'root' / 'fetch_report.md').read_text().count('Coverage: hard')       # no ID lists: no coverage per subset


def test_bad_inputs_are_clear(tmp_path, capsys):
    lst, files = fixture(tmp_path, [('a', 0, 4, 8, 5, 1.0)])
    base = ['--landmarks', str(tmp_path / 'ann' / 'landmarks'), '--bboxes', str(tmp_path / 'ann' / 'bboxes'), '--no-progress']
    for text, needle in [('a 0 4\nb 3\n', 'download_ranges.txt:2: expected 3 fields'), ('a 0 4\na 5 9\n', "video ID 'a' listed twice"),
                         ('a 4 0\n', 'end frame 0 is before start frame 4'), ('a 0 x\n', "end frame (field 3) is 'x'")]:
        lst.write_text(text)
        with pytest.raises(SystemExit) as e: main([str(lst), str(tmp_path / 'out'), *base])
        assert e.value.code == 2 and needle in capsys.readouterr().err, needle
    lst.write_text('a 0 4\n')
    for extra, needle in [(['--landmarks', str(tmp_path / 'none')], 'none: annotation folder not found (--landmarks'),
                          (['--ids', str(tmp_path / 'ann')], 'no hard_video_IDs.txt or easy_video_IDs.txt there (--ids)'),
                          (['--url-template', 'http://127.0.0.1/x.mp4'], "needs '{id}'"), (['--only', 'zz'], "['zz'] not in"),
                          (['--cookies', str(tmp_path / 'c.txt')], 'c.txt: cookies file not found (--cookies)')]:
        with pytest.raises(SystemExit) as e: main([str(lst), str(tmp_path / 'out'), *base, *extra])
        assert e.value.code == 2 and needle in capsys.readouterr().err, needle
    with pytest.raises(SystemExit): main([str(tmp_path / 'nolist.txt'), str(tmp_path / 'out'), *base])
    assert 'nolist.txt: WFLW-V download list not found' in capsys.readouterr().err
    # no annotations at all in the default place (<out>/landmarks): named
    with pytest.raises(SystemExit): main([str(lst), str(tmp_path / 'out'), '--no-progress'])
    assert "landmarks: annotation folder not found (--landmarks" in capsys.readouterr().err
    # a second run on the same root is refused while the first holds the lock
    cfg = FetchConfig(lst, tmp_path / 'out', tmp_path / 'ann' / 'landmarks', tmp_path / 'ann' / 'bboxes', progress=False)
    cfg.state.mkdir(parents=True)
    with open(cfg.state / 'lock', 'w') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match='another ldeq-fetch-wflwv run holds'): fetch_wflwv(cfg)


def test_console_script():
    exe = Path(sys.executable).parent / 'ldeq-fetch-wflwv'
    if not exe.exists(): pytest.skip('console script not installed (pip install -e .)')
    r = subprocess.run([str(exe), '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and '--url-template' in r.stdout and 'progressive' in r.stdout
