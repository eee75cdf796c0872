"""Video files decoded once and kept in memory, so that training reads random clips without seeking.

Reading a clip straight from a compressed video seeks: the decoder restarts at
the key frame before the clip and decodes forward to it, so every random clip
costs up to a whole key-frame interval of decoding (often the whole of a short
video), for two to six frames. The data part of ``python -m benchmarks.train``
measures it against frame folders. :class:`~mast.data.video.VideoFileSource`
instead decodes a file once, in order, into this cache, and serves every later
clip of it from memory.

The cache holds decoded frames as OpenCV gives them (uint8), least recently
used videos dropped first, up to a bound in bytes per process (each
DataLoader worker has its own): :data:`DEFAULT_MEGABYTES`, or the environment
variable ``MAST_VIDEO_CACHE_MB`` (0 turns the cache off). A 720p frame takes
2.6 MiB, a 10-second 720p clip at 30 frames/s about 800 MiB. A video larger
than the whole bound, or one with damaged data inside, is read by seeking as
before. When the training videos together do not fit, videos are decoded
again each time they come back: a warning says so once per process, and
``mast extract-frames`` (JPEG folders: no decoding of whole videos, no cache
needed) is then the faster input.
"""
from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Hashable

import numpy as np

ENVIRONMENT_VARIABLE = "MAST_VIDEO_CACHE_MB"
DEFAULT_MEGABYTES = 2048


def bound_from_environment() -> int:
    """The cache bound in bytes: ``MAST_VIDEO_CACHE_MB`` megabytes, else :data:`DEFAULT_MEGABYTES`
    (an unreadable value is named in a warning and the default used)."""
    text = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MEGABYTES << 20
    try:
        megabytes = int(text)
        if megabytes < 0:
            raise ValueError
    except ValueError:
        warnings.warn(f"{ENVIRONMENT_VARIABLE}={text!r} is not a whole number of megabytes >= 0; "
                      f"using {DEFAULT_MEGABYTES}", RuntimeWarning, stacklevel=3)
        return DEFAULT_MEGABYTES << 20
    return megabytes << 20


class DecodedVideos:
    """Decoded frames by key, least recently used dropped first, at most ``bound`` bytes in all
    (one per process: :func:`decoded_videos`)."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._videos: OrderedDict[Hashable, list[np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._not_cached: set[Hashable] = set()
        self._lock = threading.Lock()
        self._warned_full = False

    @property
    def bytes(self) -> int:
        """Bytes of decoded frames held now."""
        return self._bytes

    def frames(self, key: Hashable, decode: Callable[[], Iterable[np.ndarray]]) -> list[np.ndarray] | None:
        """The frames of ``key``, decoded by ``decode()`` on a miss; None when they do not fit in
        the bound (decoding stops there). Errors of ``decode()`` propagate. Either way ``key``
        is not decoded again: later calls return None at once.
        """
        with self._lock:
            if key in self._videos:
                self._videos.move_to_end(key)
                return self._videos[key]
            if key in self._not_cached or self.bound == 0:
                return None
            self._not_cached.add(key)  # until the decode succeeds
            frames = self._decode_within_bound(decode)
            if frames is None:
                return None
            self._not_cached.discard(key)
            self._videos[key] = frames
            self._bytes += sum(frame.nbytes for frame in frames)
            return frames

    def _decode_within_bound(self, decode: Callable[[], Iterable[np.ndarray]]) -> list[np.ndarray] | None:
        """Every frame ``decode()`` gives, making room as they come (so the cache and the frames
        decoded so far stay within the bound together), or None once they alone exceed it."""
        frames, size = [], 0
        decoded = iter(decode())
        try:
            for frame in decoded:
                size += frame.nbytes
                if size > self.bound:
                    return None
                self._make_room(size)
                frames.append(frame)
            return frames
        finally:
            if hasattr(decoded, "close"):
                decoded.close()  # a generator stopped early releases its video file now

    def _make_room(self, size: int) -> None:
        """Drops the least recently used videos until ``size`` more bytes fit."""
        while self._videos and self._bytes + size > self.bound:
            _, dropped = self._videos.popitem(last=False)
            self._bytes -= sum(frame.nbytes for frame in dropped)
            if not self._warned_full:
                self._warned_full = True
                warnings.warn(
                    f"the decoded-video cache ({self.bound >> 20} MB per process, {ENVIRONMENT_VARIABLE}) is full: "
                    "videos dropped from it are decoded whole again when drawn; raise the bound, or make "
                    "frame folders with `mast extract-frames` and train on those", RuntimeWarning, stacklevel=4)


_process_cache: DecodedVideos | None = None
_process_pid: int | None = None


def decoded_videos() -> DecodedVideos:
    """This process's cache (a forked DataLoader worker starts its own, bound read from the
    environment then)."""
    global _process_cache, _process_pid
    if _process_cache is None or _process_pid != os.getpid():
        _process_cache, _process_pid = DecodedVideos(bound_from_environment()), os.getpid()
    return _process_cache
