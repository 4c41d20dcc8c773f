"""The scored catalog that lookups read: building it, and reading it from SQLite or PostgreSQL.

May import valence.model, valence.data and the base (config, fileio); never the API, training or torch.
"""
