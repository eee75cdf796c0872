"""RANet [RANet] on the shared backbone (docs/baselines.md §7.3).

* :mod:`.model` -- the network: backbone embeddings, ranked correlation maps, the
  decoder; its ``model.pt``;
* :mod:`.tracker` -- the :class:`~mast.models.tracker.Tracker` that runs it on videos.
"""
