"""The command line's jobs: cross-fitting and training the torch networks, metrics, figures, what is printed.

May import valence.catalog, valence.model, valence.data and the base (config, fileio); never the API.
"""
