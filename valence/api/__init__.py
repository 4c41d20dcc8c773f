"""The Flask app that serves the saved models: routes, bodies, the page, probes and telemetry.

May import valence.catalog, valence.model, valence.data and the base (config, fileio); never training or torch.
"""
