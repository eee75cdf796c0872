"""The reconstruction engine: a query frame read out of its reference frames.

For every query pixel the keys of all references are pooled and one softmax
over them weighs the references' values (MAST; thesis Eq. 4.2-4.3):

* a *near* reference (``distance <= near_range``) offers the ``P x P`` keys
  around the pixel itself;
* a *far* reference first localises a region of interest: a dilated
  ``P x P`` correlation, softmaxed, gives an expected sub-pixel centre
  (Eq. 4.1); it then offers ``P x P`` keys and values bilinearly sampled
  around that centre. Gradients flow through the centre.

A whole-frame pass makes one plan per reference (:class:`NearPlan`: its
window scores; :class:`FarPlan`: its window centres); the query is then
reconstructed one tile of rows at a time from the plans.

Memory stays ``O(HW x refs x P^2)`` scores: no ``(HW x HW)`` affinity; far
references are scored by the fused ``roi_correlation`` (where a device has no
fused kernel, its ``C x P^2`` key windows are built one tile of rows at a time).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from mast.common.config import require
from mast.models.memory import Reference
from mast.ops import has_fused_roi_correlation, local_correlation, roi_correlation, window_sample
from mast.ops.reference import window_offsets


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of :class:`ReconstructionEngine`.

    Attributes:
        window: side ``P`` of every attention window (13 in training, 25 at test).
        near_range: references at most this many frames away skip ROI localisation.
        max_dilation: cap on the ROI-localisation dilation ``min(cap, dt // near_range + 1)``.
        roi_localisation: if False every reference is treated as near (CRW protocol).
        temperature: softmax temperature ``tau``.
        topk: keep only the ``k`` highest scores per pixel (None: all).
        normalize: L2-normalise features (cosine similarity) instead of raw dot products.
        tile_elements: budget, in elements, for the per-tile key and value windows
            (None: 2^25 on the CPU, 2^28 on a GPU, where fewer, larger tiles
            launch fewer kernels and 1 GiB buffers still fit a 16 GB card).
    """

    window: int = 13
    near_range: int = 15
    max_dilation: int = 4
    roi_localisation: bool = True
    temperature: float = 1.0
    topk: int | None = None
    normalize: bool = False
    tile_elements: int | None = None

    def __post_init__(self) -> None:
        # FieldError (a ValueError) names the field, so a config file's error names engine.window.
        require(self.window >= 1 and self.window % 2 == 1, "window", "must be an odd integer >= 1", self.window)
        require(self.temperature > 0, "temperature", "must be > 0", self.temperature)
        require(self.topk is None or self.topk >= 1, "topk", "must be >= 1 or None", self.topk)
        require(self.near_range >= 1, "near_range", "must be >= 1", self.near_range)
        require(self.max_dilation >= 1, "max_dilation", "must be >= 1", self.max_dilation)
        require(self.tile_elements is None or self.tile_elements >= 1, "tile_elements", "must be >= 1 or None",
                self.tile_elements)

    def dilation(self, distance: int) -> int:
        """ROI-localisation dilation for a reference ``distance`` frames away."""
        return min(self.max_dilation, distance // self.near_range + 1)

    def is_far(self, distance: int) -> bool:
        return self.roi_localisation and distance > self.near_range


def accumulation_dtype(tensor: torch.Tensor) -> torch.dtype:
    """Softmaxes and sums run in float32 for half-precision inputs, else in the input dtype."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def pixel_grid(batch: int, height: int, width: int, like: torch.Tensor, top: int = 0) -> torch.Tensor:
    """``(B, 2, H, W)`` holding each pixel's own ``(x, y)`` coordinates, rows
    starting at ``top``; float64 for float64 inputs, float32 otherwise."""
    dtype = accumulation_dtype(like)
    ys = torch.arange(top, top + height, device=like.device, dtype=dtype)
    xs = torch.arange(width, device=like.device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y)).unsqueeze(0).expand(batch, -1, -1, -1)


@dataclass(frozen=True)
class NearPlan:
    """A reference every sample attends around the pixel itself.

    Attributes:
        reference: the reference read.
        scores: ``(B, P^2, h, w)`` whole-frame window scores (dilation 1).
    """

    reference: Reference
    scores: torch.Tensor

    def rows(self, query_rows: torch.Tensor, window: int, top: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``(B, P^2, rows, w)`` and window centres ``(B, 2, rows, w)`` of
        the query rows ``(B, C, rows, w)`` that start at row ``top``."""
        batch, _, height, width = query_rows.shape
        return self.scores[:, :, top : top + height], pixel_grid(batch, height, width, query_rows, top)


@dataclass(frozen=True)
class FarPlan:
    """A reference read around per-pixel window centres: the ROI centre for
    far samples, the pixel itself for the near samples of a mixed batch.

    Attributes:
        reference: the reference read.
        centers: ``(B, 2, h, w)`` ``(x, y)`` window centres in the reference.
    """

    reference: Reference
    centers: torch.Tensor

    def rows(self, query_rows: torch.Tensor, window: int, top: int) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`NearPlan.rows`; the scores of a tile are computed here, so
        that the ``(B, C, P^2, rows, w)`` key windows of an unfused
        ``roi_correlation`` never exist for the whole frame."""
        centers = self.centers[:, :, top : top + query_rows.shape[-2]]
        return roi_correlation(query_rows, self.reference.features, centers, window), centers


ReferencePlan = NearPlan | FarPlan


class ReconstructionEngine(nn.Module):
    """Reconstructs a query frame's values from a memory of reference frames.

    Has no parameters: what it learns through is the features it is given.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        super().__init__()
        self.config = config or EngineConfig()

    def forward(self, query: torch.Tensor, references: list[Reference]) -> torch.Tensor:
        """
        Args:
            query: ``(B, C, h, w)`` features of the query frame.
            references: each with features ``(B, C, h, w)``, values ``(B, K, h, w)``.

        Returns:
            ``(B, K, h, w)`` reconstructed values.
        """
        self._check(query, references)
        if self.config.normalize:
            query = F.normalize(query, dim=1)
            references = [replace(r, features=F.normalize(r.features, dim=1)) for r in references]
        plans = [self.plan(query, reference) for reference in references]
        rows = self._rows_per_tile(query, references)
        tiles = [
            self._reconstruct_rows(query[:, :, top : top + rows], plans, top)
            for top in range(0, query.shape[-2], rows)
        ]
        return torch.cat(tiles, dim=-2)

    def plan(self, query: torch.Tensor, reference: Reference) -> ReferencePlan:
        """How ``query`` ``(B, C, h, w)`` reads ``reference``, from one
        whole-frame pass: its window scores when every sample attends it
        directly, else its window centres. Both are ``O(P^2 h w)``, so this
        pass needs no tiling."""
        far_samples = self._far_samples_by_dilation(reference)
        if not far_samples:
            return NearPlan(reference, local_correlation(query, reference.features, self.config.window, 1))
        return FarPlan(reference, self._window_centers(query, reference.features, far_samples))

    def roi_centers(self, query: torch.Tensor, keys: torch.Tensor, dilation: int) -> torch.Tensor:
        """Expected ROI centre in a far reference for every query pixel (Eq. 4.1).

        Args:
            query: ``(B, C, h, w)``; keys: ``(B, C, h, w)``; dilation: of the coarse window.

        Returns:
            ``(B, 2, h, w)`` sub-pixel ``(x, y)`` centres in the reference.
        """
        window = self.config.window
        scores = local_correlation(query, keys, window, dilation)
        attention = torch.softmax(scores.to(accumulation_dtype(scores)) / self.config.temperature, dim=1)
        dy, dx = window_offsets(window, float(dilation), attention)
        shift_x = torch.einsum("bphw,p->bhw", attention, dx)
        shift_y = torch.einsum("bphw,p->bhw", attention, dy)
        batch, _, height, width = query.shape
        return pixel_grid(batch, height, width, attention) + torch.stack((shift_x, shift_y), dim=1)

    def _far_samples_by_dilation(self, reference: Reference) -> dict[int, list[int]]:
        """The samples for which ``reference`` is far, by ROI-localisation dilation."""
        groups: dict[int, list[int]] = {}
        for sample, distance in enumerate(reference.distances()):
            if self.config.is_far(distance):
                groups.setdefault(self.config.dilation(distance), []).append(sample)
        return groups

    def _window_centers(
        self, query: torch.Tensor, keys: torch.Tensor, far_samples: dict[int, list[int]]
    ) -> torch.Tensor:
        """``(B, 2, h, w)`` centres: the ROI centre of each far sample at its
        dilation, the pixel itself for the other samples."""
        batch, _, height, width = query.shape
        if len(far_samples) == 1 and len(next(iter(far_samples.values()))) == batch:
            return self.roi_centers(query, keys, next(iter(far_samples)))
        centers = pixel_grid(batch, height, width, query).clone()
        # One batched coarse pass per dilation, over the samples that share it.
        for dilation, samples in far_samples.items():
            index = torch.tensor(samples, device=query.device)
            centers[index] = self.roi_centers(query[index], keys[index], dilation).to(centers.dtype)
        return centers

    def _rows_per_tile(self, query, references) -> int:
        batch, channels, _, width = query.shape
        values = sum(r.values.shape[1] + 1 for r in references)
        far = any(self.config.is_far(d) for r in references for d in r.distances())
        # Without the fused kernel, roi_correlation builds (C, P^2) key windows per pixel.
        keys = channels if far and not has_fused_roi_correlation(query.device) else 0
        per_row = batch * width * self.config.window**2 * (values + keys)
        budget = self.config.tile_elements or (1 << 28 if query.device.type == "cuda" else 1 << 25)
        return max(1, budget // max(per_row, 1))

    def _reconstruct_rows(self, query_rows: torch.Tensor, plans: list[ReferencePlan], top: int) -> torch.Tensor:
        """Reconstruction ``(B, K, rows, w)`` of the query rows ``(B, C, rows, w)`` from row ``top``."""
        window = self.config.window
        reads = [plan.rows(query_rows, window, top) for plan in plans]
        scores = torch.cat([self._masked(plan, s) for plan, (s, _) in zip(plans, reads)], dim=1)
        scores = scores.to(accumulation_dtype(scores)) / self.config.temperature
        centers = [c for _, c in reads]
        if self.config.topk is not None and self.config.topk < scores.shape[1]:
            scores, index = scores.topk(self.config.topk, dim=1)
            values = self._sample_selected(plans, centers, index)
        else:
            values = self._sample_windows(plans, centers)
        attention = torch.softmax(scores, dim=1)
        return torch.einsum("bnhw,bknhw->bkhw", attention, values.to(attention.dtype))

    @staticmethod
    def _masked(plan: ReferencePlan, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` ``(B, P^2, rows, w)`` with the samples the reference is not valid for at -inf."""
        if plan.reference.valid is None:
            return scores
        return scores.masked_fill(~plan.reference.valid.view(-1, 1, 1, 1), float("-inf"))

    def _sample_windows(self, plans: list[ReferencePlan], centers: list[torch.Tensor]) -> torch.Tensor:
        """Values ``(B, K, R P^2, rows, w)`` of every key: each reference's window around its ``centers``."""
        window = self.config.window
        return torch.cat([window_sample(p.reference.values, c, window)[0] for p, c in zip(plans, centers)], dim=2)

    def _sample_selected(
        self, plans: list[ReferencePlan], centers: list[torch.Tensor], index: torch.Tensor
    ) -> torch.Tensor:
        """Values ``(B, K, k, rows, w)`` of the top-k keys only.

        ``index`` ``(B, k, rows, w)`` points into the pooled ``R x P^2`` keys
        (reference ``i // P^2``, window offset ``i % P^2``). Each selected
        point is read bilinearly like :func:`window_sample` would, so this
        equals sampling every window and gathering, with ``R k`` reads per
        pixel instead of ``R P^2`` (the CRW protocol pools 21 x 625 keys to keep 10).
        """
        area = self.config.window**2
        owner, offset = index // area, index % area
        dy, dx = window_offsets(self.config.window, 1.0, centers[0])
        batch, top_k, rows, width = index.shape
        values = None
        for number, (plan, center) in enumerate(zip(plans, centers)):
            points = torch.stack((center[:, 0:1] + dx[offset], center[:, 1:2] + dy[offset]), dim=1)
            sampled, _ = window_sample(plan.reference.values, points.reshape(batch, 2, top_k * rows, width), 1)
            sampled = sampled.reshape(batch, -1, top_k, rows, width)
            mine = (owner == number).unsqueeze(1)
            values = torch.where(mine, sampled, 0 if values is None else values)
        return values

    @staticmethod
    def _check(query: torch.Tensor, references: list[Reference]) -> None:
        if query.dim() != 4:
            raise ValueError(f"query must have shape (B, C, h, w), got {tuple(query.shape)}")
        if not references:
            raise ValueError("at least one reference frame is needed to reconstruct a query")
        for i, reference in enumerate(references):
            if reference.features.shape != query.shape:
                raise ValueError(
                    f"references[{i}].features has shape {tuple(reference.features.shape)}, "
                    f"expected the query's {tuple(query.shape)}"
                )
            if reference.values.dim() != 4 or reference.values.shape[0] != query.shape[0] or (
                reference.values.shape[-2:] != query.shape[-2:]
            ):
                raise ValueError(
                    f"references[{i}].values has shape {tuple(reference.values.shape)}, "
                    f"expected (B, K, h, w) = ({query.shape[0]}, K, {query.shape[2]}, {query.shape[3]})"
                )
            if reference.values.shape[1] != references[0].values.shape[1]:
                raise ValueError(
                    f"references[{i}].values has {reference.values.shape[1]} channels but references[0] "
                    f"has {references[0].values.shape[1]}; all references must carry the same K"
                )
            if min(reference.distances()) < 1:
                raise ValueError(f"references[{i}].distance must be >= 1, got {reference.distance}")
