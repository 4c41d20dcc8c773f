"""The saved model, used by both faces: the feature encoder, the numpy networks, the bundle file, predictions
and explanations.

May import valence.data and the base (config, fileio); never training, the catalog, the API or torch.
"""
