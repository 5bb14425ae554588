"""The demo zoo's eight tasks: deterministic 32x32 image generators, one image domain each.

Each task draws its own kind of picture (handwritten digits, textures, road signs, object counts,
letters, satellite tiles, clock dials, landscapes), as the real benchmark's datasets differ, and
never labels another task's images. Classes come in pairs (0-1, 2-3, ...): the pretraining only
sees the pair (`label // 2`), the experts learn the fine class. Images are made from a seed on the
fly: `generate(task, split)` returns the same tensors on every machine.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import Registry

SIZE = 32
SPLIT_SIZES = {"pretrain": 3000, "train": 3000, "validation": 500, "test": 500}
MEAN, STD = 0.5, 0.25  # per-channel normalisation of [0, 1] pixels
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)[:, None]  # [1, 32, 32] pixel coordinates

Generator = Callable[[np.random.Generator, np.ndarray, str], np.ndarray]  # (rng, labels [N], split) -> [N, 32, 32, 3]
CLASSES: dict[str, list[str]] = {}
_GENERATORS: Registry[Generator] = Registry("demo task")


def _task(name: str, classes: list[str], per_split: bool = False) -> Callable[[Callable], Callable]:
    """Register a task's class names and its generator, `fn(rng, labels)` (or `fn(rng, labels, split)` when the
    images differ per split), under `name`."""
    def wrap(fn: Callable) -> Callable:
        _GENERATORS.add(name, fn if per_split else lambda rng, y, split: fn(rng, y))
        CLASSES[name] = classes
        return fn
    return wrap


# --- drawing helpers (all vectorised over the batch: per-image parameters are [N, 1, 1]) -------------
def _u(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.uniform(lo, hi, (n, 1, 1)).astype(np.float32)


def _colors(rng: np.random.Generator, n: int, center: tuple, jitter: float = 0.08) -> np.ndarray:
    """[N, 3] colours in [0, 1] scattered around `center`."""
    return np.clip(np.asarray(center, np.float32) + rng.normal(0, jitter, (n, 3)), 0, 1).astype(np.float32)


def _paint(img: np.ndarray, mask: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Blend `color` [N, 3] into `img` [N, H, W, 3] where `mask` [N, H, W] (in [0, 1]) is set."""
    m = mask[..., None].astype(np.float32)
    return img * (1 - m) + color[:, None, None, :] * m


def _fill(color: np.ndarray) -> np.ndarray:
    return np.broadcast_to(color[:, None, None, :], (len(color), SIZE, SIZE, 3)).copy()


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """[N, 32, 32] smooth random field in [0, 1] (bilinear upsampling of a cells x cells grid)."""
    low = torch.from_numpy(rng.random((n, 1, cells, cells), dtype=np.float32))
    return F.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0].numpy()


def _segment(x0, y0, x1, y1, width) -> np.ndarray:
    """[N, 32, 32] mask of the thick segment (x0, y0)-(x1, y1); arguments are [N, 1, 1]."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((_XX - x0) * dx + (_YY - y0) * dy) / (dx * dx + dy * dy + 1e-6), 0, 1)
    return np.hypot(_XX - x0 - t * dx, _YY - y0 - t * dy) < width / 2


def _by_class(y: np.ndarray, fields: list[Callable[[np.ndarray], np.ndarray]]) -> np.ndarray:
    """Stack the [N, ...] arrays made by `fields[c](index)` for the images of each class c."""
    out = None
    for c, make in enumerate(fields):
        idx = np.flatnonzero(y == c)
        if idx.size:
            part = make(idx)
            out = np.zeros((len(y), *part.shape[1:]), part.dtype) if out is None else out
            out[idx] = part
    return out


# --- the eight tasks ----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _digit_sources() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits (1797), in a fixed shuffled order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(1797).permutation(len(d.target))
    return (d.images[order] / 16.0).astype(np.float32), d.target[order]


_DIGIT_RANGES = {"test": (0, 450), "validation": (450, 750), "train": (750, 1797), "pretrain": (750, 1797)}


@_task("digits", [str(d) for d in range(10)], per_split=True)
def _digits(rng: np.random.Generator, y: np.ndarray, split: str) -> np.ndarray:
    """MNIST-like: a handwritten digit (from disjoint writers' images per split), rotated, scaled, shifted."""
    images, targets = _digit_sources()
    lo, hi = _DIGIT_RANGES[split]
    pool = [lo + np.flatnonzero(targets[lo:hi] == c) for c in range(10)]
    pick = rng.random(len(y))
    src = np.array([pool[c][int(p * len(pool[c]))] for c, p in zip(y, pick)])
    n, ang, scale = len(y), rng.uniform(-0.3, 0.3, len(y)), rng.uniform(1.25, 1.6, len(y))
    theta = np.zeros((n, 2, 3), np.float32)
    theta[:, 0, 0], theta[:, 0, 1] = scale * np.cos(ang), -scale * np.sin(ang)
    theta[:, 1, 0], theta[:, 1, 1] = scale * np.sin(ang), scale * np.cos(ang)
    theta[:, :, 2] = rng.uniform(-0.2, 0.2, (n, 2))
    t = torch.from_numpy(theta)
    grid = F.affine_grid(t, [n, 1, SIZE, SIZE], align_corners=False)
    ink = F.grid_sample(torch.from_numpy(images[src])[:, None], grid, align_corners=False)[:, 0].numpy()
    return _paint(_fill(_colors(rng, n, (0.05, 0.05, 0.05), 0.03)), np.clip(ink * 1.3, 0, 1),
                  _colors(rng, n, (0.95, 0.95, 0.95), 0.03))


@_task("textures", ["horizontal stripes", "vertical stripes", "rising diagonals", "falling diagonals",
                    "checkerboard", "polka dots", "concentric rings", "blotches"])
def _textures(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """DTD-like: a full-frame pattern in two random colours."""
    n = len(y)
    fr, p1, p2 = _u(rng, 0.1, 0.22, n), _u(rng, 0, 6.3, n), _u(rng, 0, 6.3, n)
    jit = _u(rng, -0.15, 0.15, n)

    def stripes(angle: float):
        return lambda i: np.sin(2 * np.pi * fr[i] * (_XX * np.cos(angle + jit[i]) + _YY * np.sin(angle + jit[i]))
                                + p1[i]) > 0
    r = lambda i: np.hypot(_XX - 16 - 6 * np.cos(p1[i]), _YY - 16 - 6 * np.sin(p2[i]))  # noqa: E731
    field = _by_class(y, [stripes(np.pi / 2), stripes(0.0), stripes(-np.pi / 4), stripes(np.pi / 4),
                          lambda i: np.sin(2 * np.pi * fr[i] * _XX + p1[i]) * np.sin(2 * np.pi * fr[i] * _YY + p2[i]) > 0,
                          lambda i: np.cos(2 * np.pi * fr[i] * _XX + p1[i]) + np.cos(2 * np.pi * fr[i] * _YY + p2[i]) > 1.1,
                          lambda i: np.sin(2 * np.pi * fr[i] * r(i) + p1[i]) > 0,
                          lambda i: _smooth_noise(rng, len(i), 5) > 0.5])
    return _paint(_fill(rng.random((n, 3), dtype=np.float32)), field, rng.random((n, 3), dtype=np.float32))


_SIGN_COLORS = np.array([(0.85, 0.1, 0.1), (0.1, 0.25, 0.8), (0.95, 0.8, 0.1), (0.95, 0.95, 0.95)], np.float32)


@_task("signs", ["triangle", "inverted triangle", "square", "diamond", "disc", "ring", "plus", "cross"])
def _signs(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """GTSRB-like: a road-sign shape in a sign colour over a blurred street background."""
    n = len(y)
    R = _u(rng, 8, 12, n)
    u, v = (_XX - 16 - _u(rng, -3, 3, n)) / R, (_YY - 16 - _u(rng, -3, 3, n)) / R
    a, b = (u + v) / np.sqrt(2), (u - v) / np.sqrt(2)
    plus = lambda p, q: ((abs(p) < 0.3) & (abs(q) < 1)) | ((abs(q) < 0.3) & (abs(p) < 1))  # noqa: E731
    mask = _by_class(y, [lambda i: (v[i] <= 0.5) & (v[i] >= -1 + 1.732 * abs(u[i])),
                         lambda i: (v[i] >= -0.5) & (-v[i] >= -1 + 1.732 * abs(u[i])),
                         lambda i: np.maximum(abs(u[i]), abs(v[i])) < 0.75,
                         lambda i: abs(u[i]) + abs(v[i]) < 1,
                         lambda i: u[i] ** 2 + v[i] ** 2 < 1,
                         lambda i: (u[i] ** 2 + v[i] ** 2 < 1) & (u[i] ** 2 + v[i] ** 2 > 0.25),
                         lambda i: plus(u[i], v[i]), lambda i: plus(a[i], b[i])])
    street = _smooth_noise(rng, n, 4)[..., None] * _colors(rng, n, (0.3, 0.45, 0.3), 0.1)[:, None, None]
    street = street + (1 - _smooth_noise(rng, n, 4)[..., None]) * _colors(rng, n, (0.55, 0.55, 0.6), 0.1)[:, None, None]
    sign = np.clip(_SIGN_COLORS[rng.integers(0, 4, n)] + rng.normal(0, 0.05, (n, 3)), 0, 1).astype(np.float32)
    return _paint(street, mask, sign)


@_task("counting", ["one", "two", "three", "four"])
def _counting(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """CLEVR-count-like: 1 to 4 blocks on a tabletop, each in its own cell of a 4x4 grid."""
    n = len(y)
    img = _fill(_colors(rng, n, (0.75, 0.72, 0.65), 0.06))
    img = img * (0.85 + 0.15 * _smooth_noise(rng, n, 3))[..., None]
    cells = np.argsort(rng.random((n, 16)), axis=1)
    for j in range(4):
        cy = 4 + 8 * (cells[:, j] // 4) + rng.uniform(-1.5, 1.5, n)
        cx = 4 + 8 * (cells[:, j] % 4) + rng.uniform(-1.5, 1.5, n)
        half = rng.uniform(1.5, 2.5, n)
        box = (abs(_XX - cx[:, None, None]) < half[:, None, None]) & (abs(_YY - cy[:, None, None]) < half[:, None, None])
        img = _paint(img, box & (j <= y)[:, None, None], rng.random((n, 3), dtype=np.float32) * 0.6)
    return img


_LETTERS = "AHEFOCTL"


@_task("letters", list(_LETTERS))
def _letters(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """Rendered capital letters, rotated and shifted, in dark ink on tinted paper."""
    from PIL import Image, ImageDraw, ImageFont

    n = len(y)
    masks = np.empty((n, SIZE, SIZE), np.float32)
    for k in range(n):
        font = ImageFont.load_default(size=int(rng.integers(24, 33)))
        canvas = Image.new("L", (SIZE, SIZE), 0)
        ImageDraw.Draw(canvas).text((16 + rng.uniform(-4, 4), 16 + rng.uniform(-4, 4)), _LETTERS[y[k]],
                                    fill=255, font=font, anchor="mm")
        masks[k] = np.asarray(canvas.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR), np.float32) / 255
    return _paint(_fill(_colors(rng, n, (0.85, 0.82, 0.7), 0.08)), masks, _colors(rng, n, (0.15, 0.12, 0.2), 0.06))


@_task("satellite", ["forest", "meadow", "sea", "river", "highway", "crops", "residential", "industrial"])
def _satellite(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """EuroSAT-like: a top-down land-cover tile."""
    n = len(y)
    grass, ang, off = _colors(rng, n, (0.3, 0.5, 0.2), 0.07), _u(rng, 0, np.pi, n), _u(rng, -6, 6, n)
    across = (_XX - 16) * np.cos(ang) + (_YY - 16) * np.sin(ang) - off  # signed distance to a line, px
    along = -(_XX - 16) * np.sin(ang) + (_YY - 16) * np.cos(ang)
    rough = _smooth_noise(rng, n, 16)
    ground = lambda i, c, j=0.06: _fill(_colors(rng, len(i), c, j)) * (0.8 + 0.4 * rough[i])[..., None]  # noqa: E731

    def blocks(i, color, cells, keep):
        on = np.kron(rng.random((len(i), cells, cells)) < keep, np.ones((SIZE // cells, SIZE // cells)))
        return _paint(ground(i, (0.6, 0.58, 0.52)), on * (rough[i] > 0.25), _colors(rng, len(i), color))
    return _by_class(y, [
        lambda i: ground(i, (0.12, 0.3, 0.12)) * (0.7 + 0.6 * _smooth_noise(rng, len(i), 16))[..., None],
        lambda i: ground(i, (0.45, 0.65, 0.3)),
        lambda i: _fill(_colors(rng, len(i), (0.1, 0.25, 0.5))) * (0.9 + 0.2 * _smooth_noise(rng, len(i), 4))[..., None],
        lambda i: _paint(ground(i, grass[i].mean(0)), abs(across[i] - 3 * np.sin(along[i] / 4)) < 3,
                         _colors(rng, len(i), (0.1, 0.25, 0.5))),
        lambda i: _paint(ground(i, grass[i].mean(0)), abs(across[i]) < 2, _colors(rng, len(i), (0.5, 0.5, 0.5))),
        lambda i: _paint(ground(i, (0.45, 0.55, 0.2)), np.sin(across[i] * 1.2) > 0, _colors(rng, len(i), (0.8, 0.7, 0.3))),
        lambda i: blocks(i, (0.6, 0.25, 0.2), 8, 0.5),
        lambda i: blocks(i, (0.75, 0.75, 0.78), 4, 0.4)])


@_task("clock", ["12 o'clock", "half past 1", "3 o'clock", "half past 4", "6 o'clock", "half past 7",
                 "9 o'clock", "half past 10"])
def _clock(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """A dial with one hand pointing in one of eight directions (45 degrees apart, +-12 degrees)."""
    n = len(y)
    cx, cy, r = _u(rng, 14, 18, n), _u(rng, 14, 18, n), _u(rng, 11, 14, n)
    ang = (y[:, None, None] * np.pi / 4 + _u(rng, -0.2, 0.2, n)).astype(np.float32)
    d = np.hypot(_XX - cx, _YY - cy)
    img = _paint(_fill(_colors(rng, n, (0.4, 0.45, 0.5), 0.2)), d < r, _colors(rng, n, (0.93, 0.9, 0.82), 0.05))
    img = _paint(img, abs(d - r) < 1, _colors(rng, n, (0.2, 0.2, 0.2), 0.05))
    hand = _segment(cx, cy, cx + 0.85 * r * np.sin(ang), cy - 0.85 * r * np.cos(ang), 2.5)
    return _paint(img, hand, _colors(rng, n, (0.1, 0.1, 0.35), 0.08))


@_task("scenes", ["beach", "desert", "forest", "mountains", "city by day", "city at night", "snowfield", "meadow"])
def _scenes(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """SUN-like: a landscape with a sky, a horizon and class-specific ground and skyline."""
    n = len(y)
    hz = _u(rng, 13, 20, n)
    sky = lambda i, c: _fill(_colors(rng, len(i), c)) * (0.8 + 0.3 * _YY / SIZE)[..., None]  # noqa: E731

    def land(i, sky_c, ground_c, skyline=None, top_c=(0, 0, 0)):
        img = _paint(sky(i, sky_c), _YY > hz[i], _colors(rng, len(i), ground_c))
        return img if skyline is None else _paint(img, skyline(i), _colors(rng, len(i), top_c))
    peaks = lambda i: _YY > hz[i] - _u(rng, 5, 10, len(i)) + abs(((_XX + _u(rng, 0, 16, len(i))) % 16) - 8) * 1.2  # noqa: E731
    trees = lambda i: _YY > hz[i] - 4 + abs(((_XX + _u(rng, 0, 6, len(i))) % 6) - 3) * 1.5  # noqa: E731
    towers = lambda i: _YY > hz[i] - np.kron(rng.uniform(3, 11, (len(i), 1, 8)), np.ones((1, 1, 4)))  # noqa: E731
    windows = lambda i: towers(i) & (_XX % 4 == 1) & (_YY % 3 == 0) & (rng.random((len(i), SIZE, SIZE)) < 0.5)  # noqa: E731
    return _by_class(y, [
        lambda i: _paint(land(i, (0.4, 0.6, 0.9), (0.85, 0.78, 0.55)), abs(_YY - hz[i] - 2) < 2, _colors(rng, len(i), (0.1, 0.3, 0.7))),
        lambda i: land(i, (0.7, 0.75, 0.85), (0.85, 0.7, 0.45)) * (0.9 + 0.1 * np.sin(_XX / 3 + _YY))[..., None],
        lambda i: land(i, (0.5, 0.7, 0.9), (0.2, 0.4, 0.15), trees, (0.05, 0.25, 0.08)),
        lambda i: land(i, (0.5, 0.7, 0.9), (0.45, 0.4, 0.3), peaks, (0.5, 0.5, 0.55)),
        lambda i: land(i, (0.5, 0.7, 0.9), (0.4, 0.4, 0.4), towers, (0.45, 0.45, 0.5)),
        lambda i: _paint(land(i, (0.05, 0.05, 0.2), (0.1, 0.1, 0.1), towers, (0.12, 0.12, 0.15)), windows(i),
                         _colors(rng, len(i), (0.95, 0.85, 0.3))),
        lambda i: land(i, (0.8, 0.82, 0.85), (0.95, 0.95, 0.97)),
        lambda i: land(i, (0.5, 0.7, 0.9), (0.35, 0.65, 0.25))])


TASKS = _GENERATORS.names()  # digits, textures, signs, counting, letters, satellite, clock, scenes


def generate_uint8(task: str, split: str, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 32, 32, 3], labels int64 [N]) of `task`/`split`, balanced, the same for the same seed."""
    draw = _GENERATORS.get(task)
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; use one of {list(SPLIT_SIZES)}")
    n = SPLIT_SIZES[split] if n is None else n
    rng = np.random.default_rng([seed, TASKS.index(task), list(SPLIT_SIZES).index(split)])
    y = rng.permutation(np.arange(n) % len(CLASSES[task]))
    img = draw(rng, y, split)
    img = img + rng.normal(0, 0.03, img.shape)  # sensor noise
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), y.astype(np.int64)


def generate(task: str, split: str, n: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised float images [N, 3, 32, 32], labels [N]): the encoder's input for `task`/`split`."""
    img, y = generate_uint8(task, split, n, seed)
    x = torch.from_numpy(img).permute(0, 3, 1, 2).float().div_(255).sub_(MEAN).div_(STD)
    return x.contiguous(), torch.from_numpy(y)
