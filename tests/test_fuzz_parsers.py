"""Property-based fuzzing of the annotation parsers of `ldeq.data.formats` (issue 8, robustness suite).

Formats (see the data notebook, nbs/03_data/01_formats.ipynb):
- official WFLW: 196 landmark coordinates, 4 box values, 6 attribute flags (0/1), a relative image path (207 fields);
- pre-cropped WFLW: a relative image path, then 196 landmark values;
- WFLW-V: `landmarks/<id>.npy` (T, 98, 2) and `bboxes/<id>.npy` (T, >= 4), real numbers, finite, T >= 1.

Properties checked on generated inputs:
- every valid line / file round-trips: written by ldeq's writers (or spelled by hand in any valid number syntax,
  with any whitespace) and read back, the values are exactly the ones meant;
- every invalid line / file raises `DataFormatError` (a ValueError) whose message names the file and the line
  (or the array file): never another exception type (IndexError, TypeError, UnicodeDecodeError...), and never a
  record that silently holds something else than the text says;
- the writers refuse what the readers would refuse (a written dataset can always be read back).
"""
import math
import re
import string
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from ldeq.data.formats import (CroppedRecord, DataFormatError, WFLWRecord, format_wflw_record, load_clip, parse_precropped_line,
                       parse_wflw_line, read_precropped_list, read_video_ids, read_wflw_annotations,
                       write_precropped_list, write_wflw_annotations)

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])

# What a number field may look like: a plain ASCII decimal (sign, digits, point, exponent). Python's float() also
# takes '1_000', 'nan', 'infinity' and non-ASCII digits ('١٢'); none of those is a coordinate in these files.
DECIMAL = re.compile(r'[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?')


def is_valid_number(tok: str) -> bool:
    return DECIMAL.fullmatch(tok) is not None and math.isfinite(float(tok))


# ---------------------------------------------------------------- strategies

micro = st.integers(-10**12, 10**12).map(lambda k: k / 10**6)          # exactly representable with 6 decimals
unit8 = st.integers(0, 10**8).map(lambda k: k / 10**8)                  # [0, 1] with 8 decimals
path_char = st.characters(blacklist_categories=('Cs', 'Cc', 'Zs', 'Zl', 'Zp'))
segment = st.text(path_char, min_size=1, max_size=12).filter(lambda s: not any(c.isspace() for c in s) and '/' not in s
                                                              and '\\' not in s and s not in ('.', '..') and ':' not in s)
rel_path = st.lists(segment, min_size=1, max_size=3).map('/'.join)       # unicode, no whitespace, relative, no '..'


@st.composite
def number_spelling(draw, value_range=(-1e6, 1e6)):
    "(text, value): a finite number spelled in one of the valid decimal syntaxes."
    kind = draw(st.sampled_from(['int', 'fixed', 'exp', 'plus', 'lead0', 'dot']))
    if kind == 'int':
        v = draw(st.integers(-10**6, 10**6)); return str(v), float(v)
    if kind == 'dot':
        k = draw(st.integers(0, 999)); return f'.{k:03d}', float(f'.{k:03d}')
    v = draw(st.floats(*value_range, allow_nan=False, allow_infinity=False))
    txt = {'fixed': f'{v:.4f}', 'exp': f'{v:.6e}', 'plus': f'+{abs(v):.3f}', 'lead0': f'{"-" if v < 0 else ""}00{abs(v):.2f}'}[kind]
    return txt, float(txt)


separator = st.sampled_from([' ', '  ', '\t', ' \t '])
line_end = st.sampled_from(['', '\n', '\r\n', ' \n', '\t\r\n', '   '])


def bad_token():
    "Tokens (no whitespace) that are not a plain finite decimal number."
    specials = st.sampled_from(['nan', 'NaN', '-nan', 'inf', '-inf', 'Infinity', '1e400', '-1e999', '1_000', '١٢', '１２',
                                '0x1p3', '1.2.3', '--1', '1e', 'e5', '.', '+', '', '1,5', '5%', 'None', '∞', '½'])
    free = st.text(st.characters(blacklist_categories=('Cs',)), min_size=1, max_size=8).filter(
        lambda t: not any(c.isspace() for c in t))
    return st.one_of(specials, free).filter(lambda t: t != '' and not is_valid_number(t))


def wflw_record():
    return st.builds(lambda lm, box, att, img: WFLWRecord(np.array(lm).reshape(98, 2), np.array(box), np.array(att, np.int64), img),
                     st.lists(micro, min_size=196, max_size=196), st.lists(micro, min_size=4, max_size=4),
                     st.lists(st.integers(0, 1), min_size=6, max_size=6), rel_path)


def same_record(a: WFLWRecord, b: WFLWRecord) -> bool:
    return (np.array_equal(a.landmarks, b.landmarks) and np.array_equal(a.bbox, b.bbox)
            and np.array_equal(a.attributes, b.attributes) and a.image == b.image)


def assert_names(err: Exception, path, lineno=None):
    "The error is a DataFormatError whose message names the file (and the line)."
    assert isinstance(err, DataFormatError), f'{type(err).__name__}: {err}'
    where = f'{path}:{lineno}' if lineno is not None else str(path)
    assert where in str(err), f'{where!r} not in {str(err)!r}'


def raises_named(fn, path, lineno=None):
    try: fn()
    except Exception as e:                                   # noqa: BLE001 -- the type is what we check
        assert_names(e, path, lineno)
        return e
    raise AssertionError('no error raised')


# ---------------------------------------------------------------- official WFLW

@FUZZ
@given(recs=st.lists(wflw_record(), min_size=1, max_size=4), blanks=st.lists(st.sampled_from(['', ' ', '\t', '\r']), max_size=3))
def test_wflw_roundtrip(tmp_path, recs, blanks):
    "write -> read gives identical records (unicode paths included), and write -> read -> write identical bytes."
    p = write_wflw_annotations(tmp_path / 'a.txt', recs)
    text = p.read_text(encoding='utf-8')
    p.write_text('\n'.join(blanks) + '\n' + text, encoding='utf-8')                 # leading blank lines are not records
    back = read_wflw_annotations(p)
    assert len(back) == len(recs) and all(same_record(a, b) for a, b in zip(recs, back))
    assert back[0].landmarks.shape == (98, 2) and back[0].attributes.dtype == np.int64
    q = write_wflw_annotations(tmp_path / 'b.txt', back)
    assert q.read_text(encoding='utf-8') == text
    assert not [f for f in tmp_path.iterdir() if f.name.startswith('.')]          # no temp file left by the writer


@FUZZ
@given(nums=st.lists(number_spelling(), min_size=200, max_size=200), flags=st.lists(st.sampled_from(['0', '1']), min_size=6, max_size=6),
       img=rel_path, seps=st.lists(separator, min_size=206, max_size=206), lead=st.sampled_from(['', ' ', '\t']), end=line_end)
def test_wflw_any_valid_spelling_parses_to_its_values(nums, flags, img, seps, lead, end):
    "Any valid spelling (signs, exponents, leading zeros, tabs, trailing whitespace, CRLF) gives exactly its values."
    toks = [t for t, _ in nums] + flags + [img]
    line = lead + ''.join(t + s for t, s in zip(toks[:-1], seps)) + toks[-1] + end
    r = parse_wflw_line(line, 'x.txt', 7)
    vals = np.array([v for _, v in nums])
    assert np.array_equal(r.landmarks.ravel(), vals[:196]) and np.array_equal(r.bbox, vals[196:])
    assert r.attributes.tolist() == [int(f) for f in flags] and r.image == img


@FUZZ
@example(n=0).via('empty line')
@example(n=206).via('one field missing')
@example(n=208).via('a path with a space')
@given(n=st.integers(0, 260).filter(lambda n: n != 207))
def test_wflw_wrong_field_count(n):
    toks = ['1.0'] * n
    e = raises_named(lambda: parse_wflw_line(' '.join(toks), 'ann.txt', 12), 'ann.txt', 12)
    assert 'expected 207 fields' in str(e) and f'got {n}' in str(e)


@FUZZ
@given(pos=st.integers(0, 205), tok=bad_token())
@example(pos=0, tok='nan').via('NaN coordinate')
@example(pos=199, tok='inf').via('inf box')
@example(pos=200, tok='1_0').via('underscored flag')
@example(pos=3, tok='1_000').via('underscored coordinate')
@example(pos=5, tok='١٢').via('Arabic-Indic digits')
def test_wflw_bad_number_field(pos, tok):
    "A field that is not a finite plain decimal (coordinate, box or flag) is an error naming file, line and field."
    toks = [f'{k % 500}.25' for k in range(200)] + ['0', '1', '0', '0', '1', '0', 'a/b.jpg']
    toks[pos] = tok
    e = raises_named(lambda: parse_wflw_line(' '.join(toks), 'ann.txt', 3), 'ann.txt', 3)
    assert re.search(rf'field {pos + 1}\b', str(e)), str(e)


@FUZZ
@given(pos=st.integers(200, 205), flag=st.one_of(st.integers(-5, 5).filter(lambda v: v not in (0, 1)).map(str),
                                                   st.floats(-3, 3, allow_nan=False).filter(lambda v: v not in (0, 1)).map(lambda v: f'{v:.3f}')))
def test_wflw_attribute_flag_not_0_or_1(pos, flag):
    assume(float(flag) not in (0.0, 1.0))
    toks = ['1.5'] * 200 + ['0'] * 6 + ['a/b.jpg']
    toks[pos] = flag
    e = raises_named(lambda: parse_wflw_line(' '.join(toks), 'ann.txt', 9), 'ann.txt', 9)
    assert f'field {pos + 1}' in str(e) and 'not 0 or 1' in str(e)


@pytest.mark.parametrize('img', ['/etc/passwd', '/abs/x.jpg', '../outside.jpg', 'a/../../b.jpg', '\\\\server\\x.jpg', 'C:\\x.jpg'])
def test_image_path_must_stay_inside_the_image_folder(tmp_path, img):
    "An absolute path or one with '..' would read a file outside the dataset: the parsers and the writers refuse it."
    line = ' '.join(['1.5'] * 200 + ['0'] * 6 + [img])
    e = raises_named(lambda: parse_wflw_line(line, 'ann.txt', 4), 'ann.txt', 4)
    assert repr(img) in str(e)
    raises_named(lambda: parse_precropped_line(' '.join([img] + ['0.5'] * 196), 'l.txt', 2), 'l.txt', 2)
    with pytest.raises(ValueError, match='image path'):
        format_wflw_record(WFLWRecord(np.zeros((98, 2)), np.zeros(4), np.zeros(6, np.int64), img))
    with pytest.raises(ValueError, match='image path'):
        write_precropped_list(tmp_path / 'x.txt', [CroppedRecord(img, np.zeros((98, 2)))])
    assert not (tmp_path / 'x.txt').exists()


@FUZZ
@given(n_good=st.integers(1, 4), bad_at=st.data(), blank=st.lists(st.booleans(), min_size=6, max_size=6), kind=st.sampled_from(['count', 'number', 'flag']))
def test_wflw_file_error_names_the_physical_line(tmp_path, n_good, bad_at, blank, kind):
    "In a file with blank lines, a bad face line is reported at its physical (1-based) line number."
    good = ' '.join(['10.5'] * 200 + ['0'] * 6 + ['x/y.jpg'])
    bad = {'count': ' '.join(['10.5'] * 199 + ['0'] * 6 + ['x/y.jpg']),
           'number': ' '.join(['10.5'] * 50 + ['ten'] + ['10.5'] * 149 + ['0'] * 6 + ['x/y.jpg']),
           'flag': ' '.join(['10.5'] * 200 + ['0', '0', '7', '0', '0', '0', 'x/y.jpg'])}[kind]
    k = bad_at.draw(st.integers(0, n_good))
    lines = [good] * n_good
    lines.insert(k, bad)
    out = []
    for i, l in enumerate(lines):
        if blank[i % len(blank)]: out.append('   ')
        out.append(l)
    p = tmp_path / 'list_98pt_rect_attr_train.txt'
    p.write_text('\n'.join(out) + '\n', encoding='utf-8')
    raises_named(lambda: read_wflw_annotations(p), p, out.index(bad) + 1)


@FUZZ
@given(raw=st.binary(min_size=1, max_size=400))
@example(raw=b'\xff\xfe1 2 3\n').via('UTF-16 BOM, not UTF-8')
@example(raw=('1.0 ' * 206 + 'caf\u00e9.jpg\n').encode('latin-1')).via('latin-1 path')
@example(raw=b'\x00' * 50).via('NUL bytes')
def test_wflw_random_bytes_file(tmp_path, raw):
    "Arbitrary bytes: a DataFormatError naming the file (never UnicodeDecodeError, IndexError, ...), or no face at all."
    p = tmp_path / 'list.txt'
    p.write_bytes(raw)
    try: recs = read_wflw_annotations(p)
    except Exception as e:                                   # noqa: BLE001
        assert_names(e, p); assert f'{p}:' in str(e)          # ... and a line number
        return
    assert recs == [] and raw.decode('utf-8-sig').strip() == ''


@FUZZ
@given(recs=st.lists(wflw_record(), min_size=1, max_size=2), op=st.sampled_from(['delete', 'insert', 'replace', 'truncate']),
       data=st.data())
def test_wflw_mutated_file_never_crashes_otherwise(tmp_path, recs, op, data):
    "A valid file with one byte deleted / inserted / replaced, or truncated: records or a DataFormatError naming file:line."
    p = write_wflw_annotations(tmp_path / 'a.txt', recs)
    raw = bytearray(p.read_bytes())
    i = data.draw(st.integers(0, len(raw) - 1))
    b = data.draw(st.integers(0, 255))
    if op == 'delete': del raw[i]
    elif op == 'insert': raw.insert(i, b)
    elif op == 'replace': raw[i] = b
    else: raw = raw[:i]
    p.write_bytes(bytes(raw))
    try: back = read_wflw_annotations(p)
    except Exception as e:                                   # noqa: BLE001
        assert_names(e, p); assert re.search(re.escape(str(p)) + r':\d+', str(e)), str(e)
        return
    for r in back:                                           # what parses is well-formed
        assert r.landmarks.shape == (98, 2) and np.isfinite(r.landmarks).all() and np.isfinite(r.bbox).all()
        assert set(r.attributes.tolist()) <= {0, 1} and r.image and not r.image.startswith('/')


@FUZZ
@given(rec=wflw_record(), what=st.sampled_from(['lm_nan', 'lm_inf', 'box_nan', 'flag2', 'shape', 'space', 'empty']))
def test_writer_refuses_what_the_reader_refuses(tmp_path, rec, what):
    "format_wflw_record / write_wflw_annotations raise ValueError instead of writing a line the reader rejects."
    if what == 'lm_nan': rec.landmarks[3, 1] = np.nan
    elif what == 'lm_inf': rec.landmarks[0, 0] = -np.inf
    elif what == 'box_nan': rec.bbox[2] = np.nan
    elif what == 'flag2': rec.attributes[4] = 2
    elif what == 'shape': rec.landmarks = rec.landmarks[:97]
    elif what == 'space': rec.image = 'a b.jpg'
    else: rec.image = ''
    with pytest.raises(ValueError): format_wflw_record(rec)
    with pytest.raises(ValueError): write_wflw_annotations(tmp_path / 'w.txt', [rec])
    assert not list(tmp_path.iterdir())                      # nothing written, no temp file left


# ---------------------------------------------------------------- pre-cropped lists

@FUZZ
@given(recs=st.lists(st.builds(lambda img, lm: CroppedRecord(img, np.array(lm).reshape(98, 2)), rel_path,
                               st.lists(unit8, min_size=196, max_size=196)), min_size=1, max_size=4))
def test_precropped_roundtrip(tmp_path, recs):
    p = write_precropped_list(tmp_path / 'test.txt', recs)
    back = read_precropped_list(p)
    assert [b.image for b in back] == [r.image for r in recs]
    assert all(np.array_equal(a.landmarks, b.landmarks) for a, b in zip(recs, back))
    assert write_precropped_list(tmp_path / 'again.txt', back).read_bytes() == p.read_bytes()


@FUZZ
@given(img=rel_path, nums=st.lists(number_spelling((-2.0, 2.0)), min_size=196, max_size=196),
       seps=st.lists(separator, min_size=196, max_size=196), end=line_end)
def test_precropped_any_valid_spelling(img, nums, seps, end):
    line = img + ''.join(s + t for s, (t, _) in zip(seps, nums)) + end
    r = parse_precropped_line(line, 'l.txt', 1)
    assert r.image == img and np.array_equal(r.landmarks.ravel(), [v for _, v in nums])


@FUZZ
@given(n=st.integers(0, 240).filter(lambda n: n != 197), pos=st.integers(1, 196), tok=bad_token(), which=st.sampled_from(['count', 'value']))
def test_precropped_bad_lines(n, pos, tok, which):
    toks = ['img.png'] + ['0.5'] * 196
    if which == 'count': toks = (toks * 2)[:n]
    else: toks[pos] = tok
    e = raises_named(lambda: parse_precropped_line(' '.join(toks), 'test.txt', 5), 'test.txt', 5)
    if which == 'value': assert re.search(rf'field {pos + 1}\b', str(e)), str(e)
    else: assert 'expected 197 fields' in str(e)


def test_precropped_bom_and_crlf(tmp_path):
    "A UTF-8 byte-order mark (Windows editors) is not part of the first image name; CRLF line ends are fine."
    line = 'img one.png'.replace(' ', '_') + ' ' + ' '.join(['0.25'] * 196)
    p = tmp_path / 'train.txt'
    p.write_bytes(b'\xef\xbb\xbf' + (line + '\r\n' + line + '\r\n').encode())
    recs = read_precropped_list(p)
    assert [r.image for r in recs] == ['img_one.png', 'img_one.png']


@FUZZ
@given(raw=st.binary(min_size=1, max_size=300))
def test_precropped_random_bytes_file(tmp_path, raw):
    p = tmp_path / 'test.txt'
    p.write_bytes(raw)
    try: recs = read_precropped_list(p)
    except Exception as e:                                   # noqa: BLE001
        assert_names(e, p); return
    assert recs == []


@FUZZ
@given(rec=st.builds(lambda lm: CroppedRecord('a.png', np.array(lm).reshape(98, 2)), st.lists(unit8, min_size=196, max_size=196)),
       what=st.sampled_from(['nan', 'inf', 'shape']))
def test_precropped_writer_refuses_non_finite(tmp_path, rec, what):
    if what == 'nan': rec.landmarks[5, 0] = np.nan
    elif what == 'inf': rec.landmarks[0, 1] = np.inf
    else: rec.landmarks = rec.landmarks.ravel()
    with pytest.raises(ValueError): write_precropped_list(tmp_path / 'w.txt', [rec])
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- WFLW-V arrays (load_clip) and ID lists

def _clip_root(tmp_path) -> Path:
    root = tmp_path / 'wv'
    for d in ('videos', 'landmarks', 'bboxes'): (root / d).mkdir(parents=True, exist_ok=True)
    (root / 'videos' / 'v1.mp4').write_bytes(b'')            # load_clip(check_count=False) needs the file to exist only
    return root


DTYPES = ['float64', 'float32', 'float16', 'int64', 'int32', 'uint8', 'int16', 'bool', 'complex64', 'complex128', '<U4', 'V8']


@st.composite
def array_case(draw):
    "(landmarks array, bboxes array) with random dtype, shape, length and non-finite values."
    T = draw(st.integers(0, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lm_shape = draw(st.sampled_from([(T, 98, 2), (T, 98, 2), (T, 98, 2), (T, 98), (T, 97, 2), (T, 98, 3), (T, 196), (), (T, 1, 98, 2)]))
    bb_shape = draw(st.sampled_from([(T, 4), (T, 5), (T, 4), (T, 3), (T,), (draw(st.integers(0, 6)), 4), ()]))
    arrs = []
    for shape in (lm_shape, bb_shape):
        dt = draw(st.sampled_from(DTYPES[:6] * 3 + DTYPES[6:]))
        vals = rng.uniform(-1000, 1000, shape)
        if dt == 'V8': a = np.zeros(shape, dtype='V8')
        elif dt.startswith('<U'): a = vals.astype(dt)
        elif dt == 'bool': a = vals > 0
        elif dt.startswith('uint'): a = np.abs(vals).astype(dt)
        else: a = vals.astype(dt)
        if np.issubdtype(a.dtype, np.floating) and a.size and draw(st.booleans()):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        if np.issubdtype(a.dtype, np.complexfloating) and a.size: a.flat[0] += 1j
        arrs.append(a)
    return tuple(arrs)


@FUZZ
@given(case=array_case())
@example(case=(np.float64(np.nan), np.zeros((3, 4)))).via('0-d NaN landmarks')
@example(case=(np.zeros((3, 98, 2)) + 0.5j, np.zeros((3, 4)))).via('complex landmarks')
@example(case=(np.zeros((0, 98, 2)), np.zeros((0, 4)))).via('no frame at all')
def test_load_clip_arrays(tmp_path, case):
    "Valid arrays load exactly (as float64); anything else is a DataFormatError naming the array file."
    lm, bb = case
    root = _clip_root(tmp_path)
    lp, bp = root / 'landmarks' / 'v1.npy', root / 'bboxes' / 'v1.npy'
    np.save(lp, lm); np.save(bp, bb)
    real = lambda a: np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    valid = (real(lm) and real(bb) and lm.ndim == 3 and lm.shape[1:] == (98, 2) and bb.ndim == 2 and bb.shape[1] >= 4
             and len(lm) == len(bb) >= 1 and np.isfinite(lm).all() and np.isfinite(bb).all())
    try: clip = load_clip(root, 'v1', check_count=False)
    except Exception as e:                                   # noqa: BLE001
        assert not valid, f'valid arrays refused: {e}'
        assert isinstance(e, DataFormatError), f'{type(e).__name__}: {e}'
        assert str(lp) in str(e) or str(bp) in str(e) or ('v1' in str(e) and str(root / 'landmarks') in str(e)), str(e)
        return
    assert valid, f'invalid arrays accepted: landmarks {lm.dtype} {lm.shape}, bboxes {bb.dtype} {bb.shape}'
    assert clip.landmarks.dtype == np.float64 and np.array_equal(clip.landmarks, lm.astype(np.float64))
    assert np.array_equal(clip.bboxes, bb.astype(np.float64)) and clip.n_frames == len(lm)


def _npz_bytes() -> bytes:
    import io
    buf = io.BytesIO(); np.savez(buf, landmarks=np.zeros((3, 98, 2))); return buf.getvalue()


@FUZZ
@given(raw=st.binary(max_size=300), prefix=st.booleans())
@example(raw=_npz_bytes(), prefix=False).via('an .npz archive saved as .npy')
def test_load_clip_corrupt_npy_bytes(tmp_path, raw, prefix):
    "Random bytes, or a valid .npy header followed by random / too few bytes, as the landmark file: DataFormatError."
    root = _clip_root(tmp_path)
    np.save(root / 'bboxes' / 'v1.npy', np.zeros((3, 4)))
    lp = root / 'landmarks' / 'v1.npy'
    if prefix:
        np.save(lp, np.zeros((3, 98, 2)))
        good = lp.read_bytes()
        raw = good[:128] + raw                              # header of a (3, 98, 2) float64 array, wrong data size
        assume(raw != good)
    lp.write_bytes(raw)
    e = raises_named(lambda: load_clip(root, 'v1', check_count=False), lp)
    assert 'landmarks' in str(e)


def test_load_clip_pickled_object_array_is_not_unpickled(tmp_path):
    "An object array (a pickle inside the .npy) is refused without unpickling it."
    root = _clip_root(tmp_path)
    marker = tmp_path / 'pwned'

    class Evil:
        def __reduce__(self): return (Path.touch, (marker,))
    np.save(root / 'landmarks' / 'v1.npy', np.array([Evil()], dtype=object), allow_pickle=True)
    np.save(root / 'bboxes' / 'v1.npy', np.zeros((1, 4)))
    raises_named(lambda: load_clip(root, 'v1', check_count=False), root / 'landmarks' / 'v1.npy')
    assert not marker.exists()


@FUZZ
@given(ids=st.lists(st.text(string.ascii_letters + string.digits + '_-', min_size=1, max_size=8), min_size=1, max_size=6, unique=True),
       extra=st.sampled_from(['', 'dup', 'two', 'bytes']), data=st.data())
def test_read_video_ids(tmp_path, ids, extra, data):
    "ID lists: one ID per line, blank lines ignored; two fields, a duplicate or non-UTF-8 bytes name file and line."
    root = tmp_path / 'r'; root.mkdir(exist_ok=True)
    lines = list(ids)
    k = data.draw(st.integers(0, len(lines)))
    if extra == 'dup': lines.insert(k, ids[0])
    elif extra == 'two': lines.insert(k, 'a b')
    raw = ('\n'.join(lines) + '\n').encode()
    if extra == 'bytes': raw = raw + b'\xff\xfe\n'
    (root / 'hard_video_IDs.txt').write_bytes(raw)
    p = root / 'hard_video_IDs.txt'
    if extra == '':
        assert read_video_ids(root, 'hard') == ids
    elif extra == 'dup':
        second = [i for i, l in enumerate(lines) if l == ids[0]][1] + 1
        raises_named(lambda: read_video_ids(root, 'hard'), p, second)
    elif extra == 'two':
        raises_named(lambda: read_video_ids(root, 'hard'), p, k + 1)
    else:
        raises_named(lambda: read_video_ids(root, 'hard'), p, len(lines) + 1)


@FUZZ
@given(raw=st.binary(max_size=200))
@example(raw=b'clip1\nclip\xe92\n').via('latin-1 ID')
def test_video_id_lists_random_bytes(tmp_path, raw):
    """Random bytes as an ID list: `ldeq.data.formats.read_video_ids` gives unique whitespace-free IDs or a DataFormatError
    naming file and line; `ldeq.data.formats.wflwv_items` a ValueError naming the file (never a bare UnicodeDecodeError) or
    FileNotFoundError for a listed video that does not exist."""
    from ldeq.data.formats import wflwv_items
    root = tmp_path / 'r'
    root.mkdir(exist_ok=True)
    p = root / 'hard_video_IDs.txt'
    p.write_bytes(raw)
    try: ids = read_video_ids(root, 'hard')
    except Exception as e:                                   # noqa: BLE001
        assert_names(e, p); assert re.search(re.escape(str(p)) + r':\d+', str(e)), str(e)
    else:
        assert len(set(ids)) == len(ids) and all(i and not any(c.isspace() for c in i) for i in ids)
    try: items = wflwv_items(root, 'hard')
    except FileNotFoundError as e: assert str(root) in str(e)
    except ValueError as e: assert not isinstance(e, UnicodeDecodeError) and str(p) in str(e) or str(root) in str(e), repr(e)
    else: assert items == []
