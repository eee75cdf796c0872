"""mast: self-supervised dense correspondence learning from raw video.

The whole Python API (see :mod:`mast.api`)::

    import mast
    tracker = mast.load_tracker("mast", checkpoint="runs/mast/backbone.pt", preset="quick")
    for mask in mast.track(tracker, "video.mp4", first_mask="frame0.png"):   # (H, W) uint8 ids
        ...
    global_table, per_object = mast.evaluate("results/", "DAVIS", split="val")
    features = mast.load_backbone("runs/mast/backbone.pt").extract(rgb_frame)  # (C, H/s, W/s)
"""
from mast._version import __version__

__all__ = ["__version__", "evaluate", "load_backbone", "load_tracker", "track"]

_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str):
    # The API loads torch; the command line's help and version must not wait for it.
    if name in _API:
        from mast import api

        return getattr(api, name)
    raise AttributeError(f"module 'mast' has no attribute {name!r}")
