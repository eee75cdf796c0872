"""SiamMask [SiamMask] and its SiamFC / SiamRPN modes on the shared backbone (docs/baselines.md §7.2).

* :mod:`.geometry` -- crop sizes (the context rule), anchors, box coding and IoU,
  boxes from masks (min-max and rotated);
* :mod:`.model` -- the Siamese network: backbone, adjust layers, depth-wise
  correlation, score / box / mask heads and the refinement module;
* :mod:`.tracker` -- the :class:`~mast.models.tracker.Tracker` that runs it on videos.
"""
