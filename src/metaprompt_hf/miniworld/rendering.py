"""Rasterisation of procedural drawings in the styles of the mini world (flat, clipart, photo, cartoon,
painting, sketch), the benchmark-only shifts, and a contact sheet for eyeballing the generators."""

from __future__ import annotations

import colorsys
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .catalog import _SS
from .colours import _contrasting, _hsv, _jitter, _role_colour, _vivid, colour_name
from .geometry import _FLIPPABLE, _ellipse, _geometry, _Part


@dataclass(frozen=True)
class _Placement:
    cx: float
    cy: float
    scale: float


def _place(parts: list[_Part], rng: np.random.Generator, S: int, name: str, max_rot: float = 20.0):
    """Map unit-coordinate parts to pixel coordinates with a random similarity transform (and flip)."""
    s = S * rng.uniform(0.27, 0.41)
    ang = math.radians(rng.uniform(-max_rot, max_rot))
    sx = s * rng.uniform(0.88, 1.12) * (-1.0 if (name in _FLIPPABLE and rng.random() < 0.5) else 1.0)
    free = max(0.0, S / 2 - s * 1.0)
    cx, cy = S / 2 + rng.uniform(-free, free), S / 2 + rng.uniform(-free, free)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    out = []
    for p in parts:
        pts = (p.pts * np.array([sx, s])) @ rot.T + np.array([cx, cy])
        out.append(replace(p, pts=pts, width=p.width * s))
    return out, _Placement(cx, cy, s)


def _xy(pts: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in pts]


def _mask(part: _Part, S: int, extra: float = 0.0) -> np.ndarray:
    """Coverage mask (float32 in [0, 1]) of a part; ``extra`` widens it by that many pixels (outlines)."""
    im = Image.new("L", (S, S), 0)
    d = ImageDraw.Draw(im)
    if part.width <= 0:
        d.polygon(_xy(part.pts), fill=255)
        if extra > 0:
            d.line(
                _xy(np.concatenate([part.pts, part.pts[:1]])), fill=255, width=max(1, round(2 * extra)), joint="curve"
            )
    else:
        w = part.width + 2 * extra
        pts = np.concatenate([part.pts, part.pts[:1]]) if part.closed else part.pts
        d.line(_xy(pts), fill=255, width=max(1, round(w)), joint="curve")
        if not part.closed:
            for x, y in (pts[0], pts[-1]):
                d.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    return np.asarray(im, dtype=np.float32) / 255.0


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-blend ``colour`` (RGB or an RGB field like ``img``) into ``img`` where ``mask`` > 0, in place."""
    rows = np.flatnonzero(mask.max(axis=1) > 0)
    if rows.size == 0:
        return
    cols = np.flatnonzero(mask.max(axis=0) > 0)
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    region = img[sl]
    region += mask[sl][..., None] * ((colour[sl] if colour.ndim == 3 else colour) - region)


@functools.lru_cache(maxsize=8)
def _grid(S: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _gradient_bg(rng: np.random.Generator, S: int, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = _grid(S)
    t = np.clip((xx * math.cos(a) + yy * math.sin(a)) / (S - 1) + 0.5 - 0.5 * (math.cos(a) + math.sin(a)), 0, 1)
    t = t[..., None]
    return (c1 * (1 - t) + c2 * t).astype(np.float32)


def _lowfreq(rng: np.random.Generator, S: int, cells: int, amp: float, channels: int = 3) -> np.ndarray:
    grid = rng.normal(0.0, 1.0, (cells, cells, channels)).astype(np.float32)
    out = np.empty((S, S, channels), np.float32)
    for ch in range(channels):
        im = Image.fromarray(np.ascontiguousarray(grid[..., ch])).resize((S, S), Image.BICUBIC)
        out[..., ch] = np.asarray(im)
    return out * amp


def _clutter(img: np.ndarray, rng: np.random.Generator, S: int, stroke: bool) -> None:
    """Draw 1-3 small distractor blobs or scribbles into the background."""
    for _ in range(int(rng.integers(1, 4))):
        c = np.array([rng.uniform(0.1, 0.9) * S, rng.uniform(0.1, 0.9) * S])
        r = rng.uniform(0.04, 0.1) * S
        if rng.random() < 0.5:
            pts = c + rng.normal(0, r, (int(rng.integers(3, 6)), 2))
            part = _Part(pts, "clutter", width=rng.uniform(0.01, 0.025) * S, closed=False)
        else:
            part = _Part(_ellipse(c[0], c[1], r, r * rng.uniform(0.5, 1.0), 12), "clutter")
        if stroke:
            part = replace(part, width=max(part.width, 0.012 * S), closed=part.width <= 0 or part.closed)
        colour = _jitter(rng, img[int(c[1]) % S, int(c[0]) % S], 60.0)
        _paint(img, _mask(part, S) * rng.uniform(0.5, 1.0), colour)


@dataclass
class _Shift:
    """Benchmark-only departures from the pretraining distribution, drawn from their own random stream.

    Pretraining images never get a shift, so the pretraining corpus does not depend on these settings.
    """

    rng: np.random.Generator
    scale: tuple[float, float] | None = None  # shrink objects by a factor in this range
    pattern: float = 0.0  # probability of a striped fill (flat style)
    hollow: float = 0.0  # probability of outlined (hollow) glyphs
    duotone: float = 0.0  # probability of a two-colour (duotone) recolouring of the whole image
    occlude: float = 0.0  # probability of 1-2 occluding bars
    thicken: float = 0.0  # probability of thicker pen strokes (real digits)
    blend: float = 0.0  # probability of an MNIST-M-like blend |texture - ink| over a colourful texture
    invert: float = 0.0  # probability of a photographic negative (255 - RGB) of the whole image


def _duotone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lum = img @ np.array([0.299, 0.587, 0.114], np.float32)
    lo, hi = np.percentile(lum, [1, 99])
    t = np.clip((lum - lo) / max(hi - lo, 1.0), 0, 1)[..., None]
    if rng.random() < 0.5:
        t = 1.0 - t
    dark = _hsv(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.05, 0.35))
    light = _hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.75, 1.0))
    return dark * (1 - t) + light * t


def _occlude(img: np.ndarray, rng: np.random.Generator) -> None:
    S = img.shape[0]
    for _ in range(int(rng.integers(1, 3))):
        w = rng.uniform(0.08, 0.14) * S
        c = rng.uniform(0.3, 0.7, 2) * S
        a = rng.uniform(0, math.pi)
        d = np.array([math.cos(a), math.sin(a)]) * S
        bar = _Part(np.stack([c - d, c + d]), "occluder", width=w, closed=False)
        _paint(img, _mask(bar, S), _hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.2, 1.0)))


def _finish(img: np.ndarray, image_size: int, shift: _Shift | None = None, blur: float = 0.0) -> np.ndarray:
    if shift is not None:
        if shift.occlude and shift.rng.random() < shift.occlude:
            _occlude(img, shift.rng)
        if shift.duotone and shift.rng.random() < shift.duotone:
            img = _duotone(img, shift.rng)
        if shift.invert and shift.rng.random() < shift.invert:
            img = 255.0 - np.clip(img, 0, 255)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if blur > 0:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(im.resize((image_size, image_size), Image.BOX), dtype=np.uint8)


def _render_parts(
    name: str, style: str, rng: np.random.Generator, image_size: int, clutter: bool, shift: _Shift | None = None
) -> tuple[np.ndarray, str]:
    """Render class ``name`` in ``style``; return the RGB image and the colour word of its main part."""
    S = image_size * _SS
    unit, primary = _geometry(name, rng)
    parts, pl = _place(unit, rng, S, name)
    if shift is not None and shift.scale is not None:
        f = shift.rng.uniform(*shift.scale)
        ctr = np.array([pl.cx, pl.cy])
        parts = [replace(p, pts=ctr + (p.pts - ctr) * f, width=p.width * f) for p in parts]
        pl = _Placement(pl.cx, pl.cy, pl.scale * f)
    roles = sorted({p.role for p in parts})
    vivid_only = style in ("flat",)
    colours = {r: (_vivid(rng) if vivid_only else _role_colour(rng, r)) for r in roles}
    main = colours[primary]
    px = S / 96.0  # line widths below are given for S = 96

    if style == "sketch":
        paper = rng.uniform(228, 255)
        img = np.full((S, S, 3), paper, np.float32) + rng.normal(0, 2.0, (S, S, 1)).astype(np.float32)
        ink = Image.new("L", (S, S), 0)
        d = ImageDraw.Draw(ink)
        sw = max(1, round(rng.uniform(1.2, 2.4) * px))
        if clutter:
            for _ in range(int(rng.integers(1, 3))):
                c = rng.uniform(0.1, 0.9, 2) * S
                d.line(_xy(c + rng.normal(0, 0.06 * S, (3, 2))), fill=int(rng.uniform(60, 140)), width=sw)
        for p in parts:
            for _ in range(1 if rng.random() < 0.6 else 2):
                pts = p.pts + rng.normal(0, 0.9 * px, p.pts.shape)
                if p.width > 0 and not p.closed:
                    d.line(_xy(pts), fill=255, width=max(sw, round(min(p.width, 3 * px))))
                elif p.width > 0:  # rings: two concentric outlines
                    ctr = pts.mean(0)
                    for f in (1 + p.width / 2 / pl.scale / 0.8, 1 - p.width / 2 / pl.scale / 0.8):
                        q = ctr + (pts - ctr) * f
                        d.line(_xy(np.concatenate([q, q[:1]])), fill=255, width=sw)
                else:
                    d.line(_xy(np.concatenate([pts, pts[:1]])), fill=255, width=sw, joint="curve")
        if rng.random() < 0.35:  # hatching of the main part
            yy, xx = _grid(S)
            a = rng.uniform(0, math.pi)
            hatch = ((xx * math.cos(a) + yy * math.sin(a)) % (4.5 * px)) < 1.0 * px
            big = max((p for p in parts if p.width <= 0), key=lambda p: np.ptp(p.pts[:, 0]), default=None)
            if big is not None:
                m = _mask(big, S) * hatch * 0.55
                ink = Image.fromarray(np.maximum(np.asarray(ink, np.float32), m * 255).astype(np.uint8))
        ink_a = np.asarray(ink.filter(ImageFilter.GaussianBlur(0.35 * px)), np.float32) / 255.0
        _paint(img, np.clip(ink_a * 1.2, 0, 1), np.full(3, rng.uniform(15, 80), np.float32))
        return _finish(img, image_size, shift), colour_name(main)

    if style == "photo":
        c1 = _hsv(rng.random(), rng.uniform(0.05, 0.45), rng.uniform(0.35, 0.9))
        img = _gradient_bg(rng, S, c1, _jitter(rng, c1, 45.0)) + _lowfreq(rng, S, int(rng.integers(3, 7)), 18.0)
        if clutter:
            _clutter(img, rng, S, stroke=False)
        # soft drop shadow of the whole object
        shadow = np.zeros((S, S), np.float32)
        off = rng.uniform(2, 5) * px
        for p in parts:
            shadow = np.maximum(shadow, _mask(replace(p, pts=p.pts + off), S))
        shadow = Image.fromarray((shadow * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2.5 * px))
        shadow = np.asarray(shadow, np.float32) / 255.0
        img *= 1.0 - 0.45 * shadow[..., None]
        yy, xx = _grid(S)
        a = rng.uniform(0, 2 * math.pi)
        shade = 1.0 + rng.uniform(0.25, 0.5) * ((xx - pl.cx) * math.cos(a) + (yy - pl.cy) * math.sin(a)) / pl.scale
        shade = np.clip(shade, 0.55, 1.35)[..., None]
        for p in parts:
            _paint(img, _mask(p, S), colours[p.role][None, None, :] * shade)
        img += rng.normal(0, rng.uniform(3, 9), (S, S, 3)).astype(np.float32)
        return _finish(img, image_size, shift, blur=rng.uniform(0.3, 1.0) * px), colour_name(main)

    if style == "cartoon":
        bg = _hsv(rng.random(), rng.uniform(0.15, 0.5), rng.uniform(0.88, 1.0))
        img = np.empty((S, S, 3), np.float32)
        img[:] = _contrasting(rng, main, lambda r: _hsv(r.random(), r.uniform(0.15, 0.5), r.uniform(0.85, 1.0)))
        del bg
        if clutter:
            _clutter(img, rng, S, stroke=False)
        ow = rng.uniform(2.2, 3.6) * px
        for p in parts:
            h, s_, v = colorsys.rgb_to_hsv(*(colours[p.role] / 255.0))
            fill = _hsv(h, min(1.0, s_ * 1.25 + 0.15) if s_ > 0.15 else s_, max(v, 0.8))
            _paint(img, _mask(p, S, extra=ow), np.zeros(3, np.float32))
            _paint(img, _mask(p, S), fill)
        return _finish(img, image_size, shift), colour_name(main)

    if style == "painting":
        canvas = _jitter(rng, (rng.uniform(150, 235), rng.uniform(140, 220), rng.uniform(110, 190)), 30.0)
        img = _gradient_bg(rng, S, canvas, _jitter(rng, canvas, 50.0)) + _lowfreq(rng, S, 5, 22.0)
        if clutter:
            _clutter(img, rng, S, stroke=False)
        tex = _lowfreq(rng, S, 6, 16.0)
        for p in parts:
            _paint(img, _mask(p, S), _jitter(rng, colours[p.role], 18.0)[None, None, :] + tex)
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        d = ImageDraw.Draw(im)
        n = int(rng.uniform(150, 240) * (S / 96.0) ** 2)
        pos = rng.uniform(0, S - 1, (n, 2))
        base = rng.uniform(0, math.pi)
        ang = base + rng.normal(0, 0.45, n)
        ln = rng.uniform(4.0, 10.0, n) * px
        cols = np.clip(img[pos[:, 1].astype(int), pos[:, 0].astype(int)] + rng.normal(0, 16, (n, 3)), 0, 255)
        wid = np.maximum(1, np.round(rng.uniform(2.0, 4.0, n) * px)).astype(int)
        dx, dy = np.cos(ang) * ln / 2, np.sin(ang) * ln / 2
        for k in range(n):
            x, y = pos[k]
            d.line(
                [(x - dx[k], y - dy[k]), (x + dx[k], y + dy[k])],
                fill=tuple(int(c) for c in cols[k]),
                width=int(wid[k]),
            )
        img = np.asarray(im, np.float32) * np.array([1.04, 1.0, 0.9], np.float32) + 8.0
        return _finish(img, image_size, shift, blur=rng.uniform(0.5, 1.0) * px), colour_name(main)

    if style in ("flat", "clipart"):
        if style == "flat":
            pick = _vivid if rng.random() < 0.5 else (lambda r: _hsv(r.random(), r.uniform(0, 0.4), r.uniform(0.2, 1)))
            c1 = _contrasting(rng, main, pick, 0.25)
            img = _gradient_bg(rng, S, c1, _jitter(rng, c1, 25.0 if rng.random() < 0.6 else 70.0))
        else:
            c1 = _contrasting(rng, main, lambda r: _hsv(r.random(), r.uniform(0.05, 0.35), r.uniform(0.75, 1.0)))
            img = np.empty((S, S, 3), np.float32)
            img[:] = c1
            if rng.random() < 0.4:  # ground strip
                g = _hsv(rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.6), rng.uniform(0.5, 0.85))
                img[int(S * rng.uniform(0.72, 0.9)) :] = g
        if clutter:
            _clutter(img, rng, S, stroke=False)
        outline = style == "clipart" or rng.random() < 0.35
        ow = rng.uniform(1.0, 1.8) * px
        dark = np.full(3, rng.uniform(10, 60), np.float32)
        striped = shift is not None and shift.pattern > 0 and shift.rng.random() < shift.pattern
        if striped:
            assert shift is not None
            yy, xx = _grid(S)
            a, period = shift.rng.uniform(0, math.pi), shift.rng.uniform(5.0, 9.0) * px
            stripes = (((xx * math.cos(a) + yy * math.sin(a)) % period) < period / 2)[..., None]
        for p in parts:
            if outline:
                oc = dark if style == "clipart" else colours[p.role] * 0.45
                _paint(img, _mask(p, S, extra=ow), oc)
            fill = colours[p.role]
            if striped:
                other = _contrasting(shift.rng, fill, _vivid, 0.2)
                fill = np.where(stripes, fill, other).astype(np.float32)
            _paint(img, _mask(p, S), fill)
        img += rng.normal(0, 2.5 if style == "flat" else 1.0, (S, S, 3)).astype(np.float32)
        return _finish(img, image_size, shift), colour_name(main)

    raise ValueError(f"unknown style {style!r}")


def contact_sheet(rows: Iterable[tuple[str, Sequence[np.ndarray]]], scale: int = 2) -> Image.Image:
    """Tile rows of images (``(row title, images)``) into one PIL image, for eyeballing the generators."""
    rows = list(rows)
    n = max(len(imgs) for _, imgs in rows)
    h = max(int(np.asarray(im).shape[0]) for _, imgs in rows for im in imgs) * scale
    label_w = 110
    sheet = Image.new("RGB", (label_w + n * (h + 2), len(rows) * (h + 2)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for r, (title, imgs) in enumerate(rows):
        d.text((2, r * (h + 2) + h // 2 - 5), title[:18], fill=(0, 0, 0))
        for k, im in enumerate(imgs):
            tile = Image.fromarray(np.asarray(im, np.uint8)).resize((h, h), Image.NEAREST)
            sheet.paste(tile, (label_w + k * (h + 2), r * (h + 2)))
    return sheet
