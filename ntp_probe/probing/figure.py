"""The patching heat map as a PNG (matplotlib, no UI): layers × input tokens, the normalized effect of patching."""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_write
from ..errors import NtpProbeError


def heatmap(res: dict):
    """``patch``'s result as a matplotlib ``Figure``: ``normalized`` where it is defined, else ``grid − corrupt``
    (logits). Made without pyplot: no backend is chosen or switched (a notebook shows it inline as it is).
    A near-zero result (``near_zero``) says so in its title and draws the raw ``grid − corrupt`` on the scale of the
    clean run's logits (its noise then looks as small as it is), never a normalized map."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is a dependency
        raise NtpProbeError(f"the heat map needs matplotlib ({e})") from None
    norm = res["normalized"]
    defined = any(v is not None for row in norm for v in row)
    near = bool(res.get("near_zero"))
    if near:  # not a ratio of noise: the raw differences, on a scale of the clean run's logits (noise looks pale)
        data = [[v - res["corrupt"] for v in row] for row in res["grid"]]
        label = "patched − corrupt (logits)"
        lim = max(1e-6, 20 * res["noise_threshold"])  # = the clean logits' spread (NOISE = 5% of it)
    elif defined:
        data = [[float("nan") if v is None else v for v in row] for row in norm]
        label, lim = "normalized: (patched − corrupt) / (clean − corrupt)", 1.0
    else:
        data = [[v - res["corrupt"] for v in row] for row in res["grid"]]
        label = "patched − corrupt (logits)"
        lim = max(1e-6, max(abs(v) for row in data for v in row))
    from .patching import NEAR_ZERO, position_labels

    tokens, layers = res["tokens"], res["layers"]
    if "count" in res:  # each graph has its own node ids: name the positions instead
        tokens = position_labels(tokens)
    fig = Figure(figsize=(max(6.0, 0.28 * len(tokens) + 1.8), 0.42 * len(layers) + 1.6 + 0.5 * near), dpi=120)
    ax = fig.subplots()
    im = ax.imshow(data, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(tokens)), tokens, fontsize=7, rotation=90)
    ax.set_yticks(range(len(layers)), layers, fontsize=8)
    n = f", mean of {res['count']:,} graphs" if "count" in res else ""
    title = (f"{res['model']}: {res['pair']} pair, answer token {res['step']}{n}\n"
             f"logit difference clean {res['clean']:.3g}, corrupt {res['corrupt']:.3g}")
    if near:
        title += (f"\n{NEAR_ZERO}\n|clean − corrupt| {res['gap']:.2g} ≤ noise threshold {res['noise_threshold']:.2g}: "
                  "raw differences, no normalized map")
    ax.set_title(title, fontsize=9, color="black")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02).set_label(label, fontsize=7)
    fig.tight_layout()
    return fig


def heatmap_png(res: dict, path: str | Path) -> Path:
    """Write ``patch``'s result as a heat map PNG (``heatmap``)."""
    fig = heatmap(res)
    path = Path(path)
    atomic_write(path, lambda name: fig.savefig(name, format="png"))
    return path
