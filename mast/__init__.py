"""mast: self-supervised dense correspondence learning from raw video."""
from mast._version import __version__

__all__ = ["__version__"]
