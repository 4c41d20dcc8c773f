"""Predict the valence (musical positiveness) of songs from Spotify audio features.

The parts, each a subpackage: data (reading users' files), model (the saved model), training (the command
line's jobs), catalog (what lookups read) and api (the Flask app); config and fileio are the base they share.
Their import rules are contracts in pyproject.toml. `valence.ValenceModel` is the Python API
(valence/model/frames.py).
"""

__version__ = "1.0.0"


def __getattr__(name):
    """ValenceModel, imported when asked for: the command line and the API import this package without it."""
    if name == "ValenceModel":
        from valence.model.frames import ValenceModel
        return ValenceModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
