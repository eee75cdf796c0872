"""Colour centroids for CorrFlow's ``kmeans-ce`` objective (docs/algorithm.md §4).

CorrFlow quantises colour into ``k`` clusters (16 in the paper): k-means is
fitted on LAB pixels sampled from the training videos, every pixel is then
labelled by its nearest centroid, and the network reconstructs those labels
(one-hot) from the reference frames under a cross-entropy loss. CorrFlow
shipped no script for the clustering, so the library builds the centroids
from the user's own videos and saves them with the run.

Pipeline: :func:`sample_lab_pixels` -> :func:`fit_centroids` ->
:func:`save_centroids`, wrapped by :func:`build_centroids`; training reads
them back with :func:`load_centroids` (or :func:`ensure_centroids`) and
labels pixels with :func:`assign_labels`.

All LAB values here are raw CIELAB units (L in ``[0, 100]``, a/b in about
``[-128, 127]``), as returned by :func:`mast.common.colour.rgb_to_lab`, not the
MAST-normalised values (undo those with ``denormalize_lab`` first).
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mast._version import __version__
from mast.common.files import atomic_write_text
from mast.common.colour import rgb_to_lab
from mast.data.video import PathLike, VideoSource, discover_videos

#: Written into every centroids file; :func:`load_centroids` checks it.
FILE_FORMAT = "mast-colour-centroids"
FILE_FORMAT_VERSION = 1

#: Decimals kept in the file: far below any visible colour difference, and
#: rounding hides last-bit float noise, so equal data gives equal files.
_DECIMALS = 4

#: Elements of the ``(pixels, k, 3)`` difference tensor per chunk in
#: :func:`assign_labels` (2**22 float32 = 16 MiB), whatever the batch size.
_ASSIGN_CHUNK_ELEMENTS = 1 << 22


def _frame_picks(num_frames: int, frames_per_video: int) -> list[int]:
    """At most ``frames_per_video`` distinct frame indices spread evenly over the video."""
    count = min(num_frames, frames_per_video)
    return sorted({int(i) for i in np.linspace(0, num_frames - 1, count).round()})


def _frame_quotas(num_pixels: int, num_frames: int) -> list[int]:
    """Splits ``num_pixels`` over ``num_frames`` frames as evenly as possible (sums to ``num_pixels``)."""
    base, extra = divmod(num_pixels, num_frames)
    return [base + (1 if i < extra else 0) for i in range(num_frames)]


def _frame_lab_pixels(frame: torch.Tensor, quota: int, rng: np.random.Generator) -> torch.Tensor:
    """``quota`` pixels of one ``(3, H, W)`` RGB frame, drawn without replacement, as ``(quota', 3)`` LAB.

    ``quota'`` is ``min(quota, H * W)``. Only the drawn pixels are converted to LAB.
    """
    flat = frame.reshape(3, -1)
    count = min(quota, flat.shape[1])
    chosen = torch.from_numpy(rng.choice(flat.shape[1], size=count, replace=False))
    rgb = flat[:, chosen].reshape(1, 3, count, 1)  # LAB is per pixel: any layout will do
    return rgb_to_lab(rgb).reshape(3, count).T


def sample_lab_pixels(
    sources: Sequence[VideoSource],
    num_pixels: int = 200_000,
    frames_per_video: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """LAB pixels drawn uniformly from a few frames of every video.

    Each video contributes up to ``frames_per_video`` frames spread evenly
    over its length (only those are decoded, one at a time); every chosen
    frame contributes an equal share of ``num_pixels``, drawn without
    replacement with a generator seeded by ``seed``. Frames smaller than their
    share give all their pixels, so the result can hold fewer than
    ``num_pixels``. A video whose frames fail to decode is skipped with a warning.

    Args:
        sources: the videos (e.g. a :class:`~mast.data.video.DiscoveryReport`).
        num_pixels: total pixels wanted.
        frames_per_video: most frames read per video.
        seed: seeds the pixel draw; equal inputs and seed give equal pixels.
        progress: show a tqdm bar over the videos (on stderr).

    Returns:
        ``(N, 3)`` float32 LAB pixels, N <= ``num_pixels``, L in ``[0, 100]``.
    """
    if num_pixels < 1 or frames_per_video < 1:
        raise ValueError(f"num_pixels and frames_per_video must be >= 1, got {num_pixels}, {frames_per_video}")
    picks = [_frame_picks(source.num_frames, frames_per_video) for source in sources]
    total_frames = sum(len(p) for p in picks)
    if total_frames == 0:
        raise ValueError("no video frames to sample colour pixels from")
    quotas = iter(_frame_quotas(num_pixels, total_frames))
    rng = np.random.default_rng(seed)
    pixels: list[torch.Tensor] = []
    videos = tqdm(list(zip(sources, picks)), desc="sampling colours", unit="video", disable=not progress,
                  dynamic_ncols=True)
    for source, indices in videos:
        videos.set_postfix_str(source.name, refresh=False)
        video_quotas = [next(quotas) for _ in indices]  # drawn before reading: a skipped video shifts nothing
        try:
            for index, quota in zip(indices, video_quotas):
                pixels.append(_frame_lab_pixels(source.read([index])[0], quota, rng))
        except ValueError as error:
            warnings.warn(f"skipping video {source.name} for colour sampling: {error}", RuntimeWarning, stacklevel=2)
    if not pixels:
        raise ValueError("no frame could be decoded to sample colour pixels from")
    return torch.cat(pixels).float()


def fit_centroids(
    pixels: torch.Tensor | np.ndarray, k: int = 16, seed: int = 0, batch_size: int = 4096
) -> torch.Tensor:
    """k-means (scikit-learn's ``MiniBatchKMeans``) on LAB pixels.

    Args:
        pixels: ``(N, 3)`` LAB pixels, N >= k.
        k: number of clusters.
        seed: ``random_state`` of the clustering (initialisation and batches).
        batch_size: pixels per mini-batch.

    Returns:
        ``(k, 3)`` float32 centroids, sorted by L, then a, then b, so the label
        of a colour does not depend on the clustering's internal order.
    """
    from sklearn.cluster import MiniBatchKMeans  # heavy import, only needed here

    data = np.asarray(pixels.detach().cpu() if isinstance(pixels, torch.Tensor) else pixels, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 3:
        raise ValueError(f"pixels must be (N, 3) LAB values, got shape {data.shape}")
    if k < 1 or data.shape[0] < k:
        raise ValueError(f"k-means needs 1 <= k <= number of pixels, got k={k} for {data.shape[0]} pixels")
    if not np.isfinite(data).all():
        raise ValueError("pixels contain NaN or infinite values")
    kmeans = MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=batch_size, random_state=seed)
    centres = kmeans.fit(data).cluster_centers_
    order = np.lexsort((centres[:, 2], centres[:, 1], centres[:, 0]))  # last key is the primary one
    return torch.from_numpy(centres[order].astype(np.float32))


def assign_labels(lab: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The index of each pixel's nearest centroid (squared Euclidean distance in LAB).

    Ties go to the lower index. Works on any device (centroids are moved to
    ``lab``'s); differences are computed exactly, in chunks of pixels, so the
    working memory stays about 16 MiB whatever the batch size.

    Args:
        lab: ``(B, 3, H, W)`` raw LAB (not MAST-normalised).
        centroids: ``(k, 3)`` LAB centroids.

    Returns:
        ``(B, H, W)`` long labels in ``[0, k)``.
    """
    if lab.ndim != 4 or lab.shape[1] != 3:
        raise ValueError(f"lab must be (B, 3, H, W), got {tuple(lab.shape)}")
    if centroids.ndim != 2 or centroids.shape[1] != 3 or centroids.shape[0] < 1:
        raise ValueError(f"centroids must be (k, 3), got {tuple(centroids.shape)}")
    batch, _, height, width = lab.shape
    dtype = torch.promote_types(lab.dtype, torch.float32)  # half precision would blur close colours
    pixels = lab.permute(0, 2, 3, 1).reshape(-1, 3).to(dtype)
    centres = centroids.to(device=lab.device, dtype=dtype)
    labels = torch.empty(pixels.shape[0], dtype=torch.long, device=lab.device)
    chunk = max(1, _ASSIGN_CHUNK_ELEMENTS // (3 * centres.shape[0]))
    for start in range(0, pixels.shape[0], chunk):
        part = pixels[start : start + chunk]
        labels[start : start + chunk] = (part[:, None, :] - centres[None]).square().sum(dim=2).argmin(dim=1)
    return labels.view(batch, height, width)


def _check_centroids(values: Any, where: str) -> torch.Tensor:
    """``values`` as a ``(k, 3)`` float32 tensor with finite entries, else ``ValueError`` naming ``where``."""
    try:
        centroids = torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: centroids are not a numeric (k, 3) table ({error})") from None
    if centroids.ndim != 2 or centroids.shape[1] != 3 or centroids.shape[0] < 1:
        raise ValueError(f"{where}: centroids must have shape (k, 3) with k >= 1, got {tuple(centroids.shape)}")
    if not torch.isfinite(centroids).all():
        raise ValueError(f"{where}: centroids contain NaN or infinite values")
    return centroids


def save_centroids(path: PathLike, centroids: torch.Tensor, meta: dict[str, Any] | None = None) -> None:
    """Writes ``(k, 3)`` LAB centroids and ``meta`` as a small JSON file, atomically.

    The file is written to a temporary file beside ``path`` and renamed over
    it (:func:`mast.common.files.atomic_write_text`), so a crash never leaves
    a half-written file. ``meta`` must be JSON
    serialisable (paths and other objects are written as strings); the
    library version is added as ``mast_version`` unless given.
    """
    path = Path(path)
    values = _check_centroids(centroids.detach().cpu(), str(path))
    document = {
        "format": FILE_FORMAT,
        "format_version": FILE_FORMAT_VERSION,
        "colour_space": "CIELAB (L 0-100, a, b)",
        "k": values.shape[0],
        "centroids": [[round(float(x), _DECIMALS) for x in row] for row in values.tolist()],
        "meta": {"mast_version": __version__, **(meta or {})},
    }
    atomic_write_text(path, json.dumps(document, indent=2, default=str, allow_nan=False) + "\n")


def load_centroids(path: PathLike) -> tuple[torch.Tensor, dict[str, Any]]:
    """Reads a file written by :func:`save_centroids`.

    Returns:
        ``(centroids, meta)``: ``(k, 3)`` float32 LAB centroids and the meta dict.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a valid centroids file (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"centroids file not found: {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a centroids file (invalid JSON: {error})") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT or "centroids" not in document:
        raise ValueError(f"{path}: not a centroids file (expected a JSON object with format {FILE_FORMAT!r})")
    if document.get("format_version") != FILE_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported centroids format version {document.get('format_version')!r}")
    centroids = _check_centroids(document["centroids"], str(path))
    if document.get("k") != centroids.shape[0]:
        raise ValueError(f"{path}: the file says k={document.get('k')!r} but holds {centroids.shape[0]} centroids")
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: 'meta' must be a JSON object")
    return centroids, meta


def build_centroids(
    paths: PathLike | Sequence[PathLike],
    out_path: PathLike,
    k: int = 16,
    num_pixels: int = 200_000,
    frames_per_video: int = 8,
    frame_stride: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Finds the videos under ``paths``, samples their colours, fits k-means, saves to ``out_path``.

    Unreadable videos are skipped with a warning (by
    :func:`~mast.data.video.discover_videos`). The file's meta records k, the
    seed, the sampling settings, the pixels used and the videos counted.

    Returns:
        ``(k, 3)`` float32 LAB centroids, sorted (see :func:`fit_centroids`).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no usable video, or fewer pixels than ``k``.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    report = discover_videos(paths, frame_stride=frame_stride)
    pixels = sample_lab_pixels(report, num_pixels, frames_per_video, seed, progress)
    centroids = fit_centroids(pixels, k=k, seed=seed)
    meta = {
        "k": k,
        "seed": seed,
        "num_pixels": pixels.shape[0],
        "requested_pixels": num_pixels,
        "frames_per_video": frames_per_video,
        "frame_stride": frame_stride,
        "num_videos": len(report),
        "num_skipped_videos": report.num_skipped,
        "num_data_paths": len(paths),
    }
    save_centroids(out_path, centroids, meta)
    return centroids


def ensure_centroids(
    path: PathLike, data_paths: PathLike | Sequence[PathLike], k: int = 16, **build_options: Any
) -> torch.Tensor:
    """The ``(k, 3)`` centroids in ``path``; built from ``data_paths`` first when the file is missing.

    ``build_options`` go to :func:`build_centroids`. An existing file with a
    different ``k`` is an error (``ValueError``), never silently rebuilt.
    """
    if not Path(path).exists():
        build_centroids(data_paths, path, k=k, **build_options)
    # Read back even when just built: the file's rounded values are what every later
    # reader (another rank, a resumed run) gets, so a run starts from those too.
    centroids, _ = load_centroids(path)
    if centroids.shape[0] != k:
        raise ValueError(f"{path}: holds {centroids.shape[0]} centroids but k={k} was asked for; delete it to rebuild")
    return centroids
