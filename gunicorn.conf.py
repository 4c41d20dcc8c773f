"""Settings gunicorn reads from the working directory (its default config file).

Each worker loads the bundles and predicts the whole catalog before it serves:
about 10-35 s for the full 232,725-row file on 2 busy CPUs, which is more than
gunicorn's default 30 s worker timeout (a worker that takes longer to boot is
killed and restarted, for ever).
"""
timeout = 120
