"""The detection-based tracker of "Learning to Track Any Object" [Dave] on the shared backbone
(docs/baselines.md §7.4).

* :mod:`.fpn` -- the feature pyramid over ``stages()`` and the level a box maps to;
* :mod:`.template` -- the template feature and its discriminative forms (ridge regression);
* :mod:`.regions` -- region pooling and mask pasting through the library's bilinear sampler, NMS;
* :mod:`.model` -- the network: pyramid, attention, proposals, box and mask heads;
* :mod:`.tracker` -- the :class:`~mast.models.tracker.Tracker` that runs it on videos.
"""
