"""Predict the valence (musical positiveness) of songs from Spotify audio features.

The parts, each a subpackage: data (reading users' files), model (the saved model), training (the command
line's jobs), catalog (what lookups read) and api (the Flask app); config and fileio are the base they share.
Their import rules are contracts in pyproject.toml.
"""

__version__ = "1.0.0"
