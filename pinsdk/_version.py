"""The version of pinsdk (its own module, so nothing imports the package for it)."""

__version__ = "0.1.0"
