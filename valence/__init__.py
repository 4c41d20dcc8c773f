"""Predict the valence (musical positiveness) of songs from Spotify audio features."""

__version__ = "1.0.0"
