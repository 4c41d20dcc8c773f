"""Reading users' files: CSV bytes to a clean frame with a reason for every skipped row, generated data, the download.

May import the base (config, fileio) only.
"""
