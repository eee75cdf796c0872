"""The bottom layer of mast: what every other package shares.

Nothing here imports any other part of mast, so every layer may import it
(``tests/test_layers.py`` keeps it so).

* :mod:`mast.common.files` -- atomic writes (temporary sibling + rename), the
  one naming rule for temporaries, and the clean-up of those a killed
  process left behind.
* :mod:`mast.common.outputs` -- output folders that never destroy inputs or
  files mast did not write: ``run.json`` records, ``overwrite``.
* :mod:`mast.common.locks` -- one writer per output folder (``flock``, the holder's PID).
* :mod:`mast.common.checkpoints` -- checkpoint files, written atomically and
  loaded as weights only.
* :mod:`mast.common.config` -- dataclass schemas from YAML, with type checks
  and dotted ``key=value`` overrides.
* :mod:`mast.common.devices` -- ``device`` / ``train.device`` names to a
  ``torch.device``, with a one-line error where the device does not exist.
* :mod:`mast.common.masks` -- mask and palette PNG I/O, void handling.
* :mod:`mast.common.colour` -- RGB/LAB conversion, normalisation, channel dropout.
* :mod:`mast.common.references` -- which past frames a query frame reads.
* :mod:`mast.common.errors` -- typed errors naming the argument at fault (never a CLI flag).
* :mod:`mast.common.threads` -- the threads a command computes with (set for a block,
  recorded in run records), and the one set-up of a worker process of a pool.
"""
