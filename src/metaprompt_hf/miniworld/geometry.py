"""Geometry of the procedural classes: every class is a list of parts in unit coordinates (x right, y down,
roughly inside [-1, 1]^2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .catalog import _SHAPE_NAMES


@dataclass(frozen=True)
class _Part:
    """A filled polygon (``width == 0``) or a stroked polyline (``width > 0``, in unit coordinates)."""

    pts: np.ndarray
    role: str
    width: float = 0.0
    closed: bool = True


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, a0: float = 0.0, a1: float = 2 * math.pi):
    t = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * math.pi - 1e-6)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _regular(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    t = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _star(n: int, r_in: float) -> np.ndarray:
    t = -math.pi / 2 + np.arange(2 * n) * math.pi / n
    r = np.where(np.arange(2 * n) % 2 == 0, 1.0, r_in)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x / 17.0, -(y - 2.0) / 17.0], axis=1)


def _crescent(d: float, r: float) -> np.ndarray:
    x = (1 + d * d - r * r) / (2 * d)
    th1 = math.acos(max(-1.0, min(1.0, x)))
    outer = _ellipse(0, 0, 1, 1, 30, th1, 2 * math.pi - th1)
    phi1 = math.atan2(math.sqrt(max(0.0, 1 - x * x)), x - d)
    inner = _ellipse(d, 0, r, r, 24, 2 * math.pi - phi1, phi1)
    pts = np.concatenate([outer, inner])
    return pts - np.array([pts[:, 0].mean() * 0.5, 0.0])


def _geom_shape(name: str, rng: np.random.Generator) -> list[_Part]:
    u = rng.uniform
    if name == "circle":
        return [_Part(_ellipse(0, 0, 1, 1, 36), "main")]
    if name == "triangle":
        pts = _regular(3, 1.05, -math.pi / 2 + u(-0.15, 0.15)) + rng.normal(0, 0.05, (3, 2))
        return [_Part(pts + np.array([0, 0.15]), "main")]
    if name == "square":
        return [_Part(_regular(4, 1.0, math.pi / 4), "main")]
    if name == "star":
        return [_Part(_star(5, u(0.38, 0.5)), "main")]
    if name == "heart":
        return [_Part(_heart(), "main")]
    if name == "cross":
        a = u(0.28, 0.38)
        pts = [
            (-a, -1),
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
        ]
        return [_Part(np.array(pts, dtype=np.float64) * 0.95, "main")]
    if name == "hexagon":
        return [_Part(_regular(6, 1.0, u(0, math.pi / 3)), "main")]
    if name == "pentagon":
        return [_Part(_regular(5, 1.0, -math.pi / 2 + u(-0.2, 0.2)), "main")]
    if name == "diamond":
        w = u(0.52, 0.68)
        return [_Part(np.array([[0, -1.0], [w, 0], [0, 1.0], [-w, 0]]), "main")]
    if name == "crescent":
        return [_Part(_crescent(u(0.4, 0.55), u(0.8, 0.9)), "main")]
    if name == "arrow":
        s, h = u(0.16, 0.26), u(0.45, 0.6)
        pts = [(-1, -s), (0.15, -s), (0.15, -h), (1, 0), (0.15, h), (0.15, s), (-1, s)]
        return [_Part(np.array(pts, dtype=np.float64), "main")]
    if name == "ring":
        return [_Part(_ellipse(0, 0, 0.8, 0.8, 36), "main", width=u(0.28, 0.4), closed=True)]
    raise KeyError(name)


def _geom_object(name: str, rng: np.random.Generator) -> list[_Part]:
    u = rng.uniform
    parts: list[_Part] = []
    if name == "house":
        w = u(0.55, 0.78)
        if rng.random() < 0.4:
            parts.append(_Part(_rect(w * 0.35, -0.75, w * 0.35 + 0.18, -0.2), "roof"))
        parts.append(_Part(_rect(-w, -0.05, w, 0.85), "wall"))
        parts.append(_Part(np.array([[-w - 0.14, -0.02], [w + 0.14, -0.02], [0, -0.05 - u(0.55, 0.8)]]), "roof"))
        xd = u(-w + 0.2, w - 0.2)
        dw = u(0.11, 0.15)
        parts.append(_Part(_rect(xd - dw, 0.4, xd + dw, 0.85), "door"))
        if rng.random() < 0.85:
            xw = -xd * 0.9 if abs(xd) > 0.15 else w * 0.55
            parts.append(_Part(_rect(xw - 0.12, 0.12, xw + 0.12, 0.36), "window"))
        return parts
    if name == "tree":
        tw = u(0.08, 0.13)
        parts.append(_Part(_rect(-tw, 0.1, tw, 0.95), "trunk"))
        if rng.random() < 0.65:
            for _ in range(int(rng.integers(1, 4))):
                r = u(0.42, 0.62)
                parts.append(_Part(_ellipse(u(-0.25, 0.25), u(-0.45, -0.2), r, r * u(0.85, 1.1)), "leaves"))
        else:
            for k in range(3):
                y0 = 0.3 - k * 0.38
                hw = 0.8 - k * 0.18
                parts.append(_Part(np.array([[-hw, y0], [hw, y0], [0, y0 - 0.62]]), "leaves"))
        return parts
    if name == "car":
        parts.append(
            _Part(np.array([[-0.5, 0.02], [-0.3, -0.38], [0.3, -0.38], [0.5, 0.02]]) + [u(-0.1, 0.1), 0], "body")
        )
        body = np.array([[-0.95, 0.05], [0.9, 0.05], [0.98, 0.2], [0.95, 0.45], [-0.95, 0.45], [-0.98, 0.2]])
        parts.append(_Part(body, "body"))
        parts.append(_Part(np.array([[-0.38, -0.02], [-0.25, -0.3], [0.25, -0.3], [0.38, -0.02]]), "window"))
        r = u(0.2, 0.25)
        for x in (-0.55, 0.55):
            parts.append(_Part(_ellipse(x, 0.45, r, r, 20), "wheel"))
            parts.append(_Part(_ellipse(x, 0.45, r * 0.4, r * 0.4, 12), "hub"))
        return parts
    if name == "fish":
        ry = u(0.32, 0.45)
        parts.append(_Part(np.array([[0.35, 0], [0.95, -u(0.3, 0.5)], [0.85, 0], [0.95, u(0.3, 0.5)]]), "fish"))
        if rng.random() < 0.6:
            parts.append(_Part(np.array([[-0.3, -ry * 0.8], [0.0, -ry - 0.25], [0.2, -ry * 0.7]]), "fish"))
        parts.append(_Part(_ellipse(-0.15, 0, 0.62, ry), "fish"))
        parts.append(_Part(_ellipse(-0.5, -0.08, 0.08, 0.08, 12), "eye"))
        return parts
    if name == "flower":
        parts.append(_Part(np.array([[0, -0.2], [u(-0.1, 0.1), 0.95]]), "stem", width=0.08, closed=False))
        if rng.random() < 0.6:
            parts.append(_Part(_ellipse(0.2, 0.5, 0.22, 0.09), "stem"))
        n = int(rng.integers(5, 9))
        pr = u(0.2, 0.27)
        for k in range(n):
            a = 2 * math.pi * k / n
            parts.append(_Part(_ellipse(0.34 * math.cos(a), -0.32 + 0.34 * math.sin(a), pr, pr, 16), "petal"))
        parts.append(_Part(_ellipse(0, -0.32, 0.17, 0.17, 16), "center"))
        return parts
    if name == "cup":
        parts.append(_Part(_ellipse(0.45, 0.0, 0.28, 0.3, 24), "cup", width=0.11, closed=True))
        parts.append(_Part(np.array([[-0.6, -0.55], [0.5, -0.55], [0.38, 0.6], [-0.48, 0.6]]) + [-0.1, 0], "cup"))
        if rng.random() < 0.4:
            parts.append(_Part(_ellipse(-0.1, 0.66, 0.85, 0.1, 24), "saucer"))
        return parts
    if name == "umbrella":
        parts.append(_Part(np.array([[0, -0.1], [0, 0.75]]), "handle", width=0.06, closed=False))
        hook = _ellipse(0.14, 0.75, 0.14, 0.14, 10, 0, math.pi)[::-1]
        parts.append(_Part(hook, "handle", width=0.06, closed=False))
        top = _ellipse(0, -0.05, 0.92, u(0.6, 0.8), 24, math.pi, 2 * math.pi)
        scallop = np.concatenate([_ellipse(0.69 - 0.46 * k, -0.05, 0.23, 0.12, 8, 0, -math.pi) for k in range(4)])
        parts.append(_Part(np.concatenate([top, scallop]), "canopy"))
        return parts
    if name == "boat":
        parts.append(_Part(np.array([[0, 0.3], [0, -0.9]]), "mast", width=0.05, closed=False))
        parts.append(_Part(np.array([[0.05, -0.85], [0.05, 0.22], [u(0.55, 0.75), 0.22]]), "sail"))
        if rng.random() < 0.5:
            parts.append(_Part(np.array([[-0.05, -0.6], [-0.05, 0.22], [-u(0.4, 0.55), 0.22]]), "sail"))
        parts.append(_Part(np.array([[-0.95, 0.28], [0.95, 0.28], [0.6, 0.66], [-0.6, 0.66]]), "hull"))
        if rng.random() < 0.3:
            xs = np.linspace(-1.0, 1.0, 17)
            parts.append(_Part(np.stack([xs, 0.82 + 0.05 * np.sin(xs * 12)], 1), "water", width=0.06, closed=False))
        return parts
    if name == "key":
        parts.append(_Part(_ellipse(-0.58, 0, 0.3, 0.3, 24), "metal", width=0.14, closed=True))
        parts.append(_Part(np.array([[-0.28, 0], [0.95, 0]]), "metal", width=0.13, closed=False))
        for k in range(int(rng.integers(2, 4))):
            x = 0.85 - 0.2 * k
            parts.append(_Part(_rect(x - 0.06, 0.0, x + 0.06, u(0.22, 0.32)), "metal"))
        return parts
    if name == "sun":
        n = int(rng.integers(8, 13))
        off = u(0, math.pi)
        for k in range(n):
            a = off + 2 * math.pi * k / n
            seg = np.array([[0.6 * math.cos(a), 0.6 * math.sin(a)], [0.95 * math.cos(a), 0.95 * math.sin(a)]])
            parts.append(_Part(seg, "sun", width=0.08, closed=False))
        parts.append(_Part(_ellipse(0, 0, 0.45, 0.45, 28), "sun"))
        return parts
    if name == "cloud":
        n = int(rng.integers(3, 6))
        xs = np.linspace(-0.6, 0.6, n)
        for x in xs:
            r = u(0.28, 0.42) * (1.2 if abs(x) < 0.3 else 1.0)
            parts.append(_Part(_ellipse(x, 0.25 - r * 0.8, r, r, 20), "cloud"))
        parts.append(_Part(_ellipse(0, 0.22, 0.95, 0.22, 24), "cloud"))
        return parts
    if name == "mushroom":
        sw = u(0.14, 0.22)
        parts.append(_Part(np.array([[-sw, 0], [sw, 0], [sw * 1.2, 0.9], [-sw * 1.2, 0.9]]), "mstem"))
        ry = u(0.55, 0.75)
        parts.append(_Part(_ellipse(0, 0.08, 0.85, ry, 26, math.pi, 2 * math.pi), "cap"))
        if rng.random() < 0.7:
            for _ in range(int(rng.integers(3, 6))):
                a = u(math.pi * 1.15, math.pi * 1.85)
                rr = u(0.3, 0.6)
                parts.append(
                    _Part(_ellipse(0.85 * rr * math.cos(a), 0.08 + ry * rr * math.sin(a), 0.09, 0.08), "spot")
                )
        return parts
    if name == "apple":
        parts.append(_Part(np.array([[0, -0.45], [0.1, -0.9]]), "trunk", width=0.07, closed=False))
        t = np.linspace(-math.pi, math.pi, 40, endpoint=False)
        top = np.angle(np.exp(1j * (t + math.pi / 2)))  # angular distance to the top (y points down)
        bottom = np.angle(np.exp(1j * (t - math.pi / 2)))
        r = 0.75 * (1 - 0.25 * np.exp(-(top**2) / 0.05) - 0.06 * np.exp(-(bottom**2) / 0.08))
        parts.append(_Part(np.stack([1.08 * r * np.cos(t), 0.1 + r * np.sin(t)], axis=1), "apple"))
        if rng.random() < 0.7:
            leaf = _ellipse(0, 0, 0.22, 0.09, 12) @ np.array([[0.8, -0.6], [0.6, 0.8]]) + [0.3, -0.7]
            parts.append(_Part(leaf, "leaves"))
        return parts
    if name == "mountain":
        if rng.random() < 0.7:
            x2 = u(0.2, 0.5) * (1 if rng.random() < 0.5 else -1)
            parts.append(_Part(np.array([[x2 - 0.7, 0.8], [x2 + 0.35, -0.3], [x2 + 1.0, 0.8]]), "rock"))
        peak = u(-0.2, 0.2)
        parts.append(_Part(np.array([[-0.95, 0.8], [peak, -0.85], [0.95, 0.8]]), "rock"))
        t = 0.32
        left = np.array([peak + (-0.95 - peak) * t, -0.85 + 1.65 * t])
        right = np.array([peak + (0.95 - peak) * t, -0.85 + 1.65 * t])
        zig = [left, left * 0.6 + right * 0.4 + [0, -0.08], left * 0.5 + right * 0.5 + [0, 0.05], right]
        parts.append(_Part(np.array([[peak, -0.85], *zig[::-1]]), "snow"))
        return parts
    raise KeyError(name)


_OBJECT_PRIMARY = {
    "house": "wall",
    "tree": "leaves",
    "car": "body",
    "fish": "fish",
    "flower": "petal",
    "cup": "cup",
    "umbrella": "canopy",
    "boat": "hull",
    "key": "metal",
    "sun": "sun",
    "cloud": "cloud",
    "mushroom": "cap",
    "apple": "apple",
    "mountain": "rock",
}
_FLIPPABLE = {"car", "fish", "cup", "key", "boat", "apple", "arrow", "crescent", "umbrella"}


def _geometry(name: str, rng: np.random.Generator) -> tuple[list[_Part], str]:
    if name in _SHAPE_NAMES:
        return _geom_shape(name, rng), "main"
    return _geom_object(name, rng), _OBJECT_PRIMARY[name]
