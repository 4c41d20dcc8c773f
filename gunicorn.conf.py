"""Settings gunicorn reads from the working directory (its default config file).

Each worker loads the bundles and predicts the whole catalog before it serves:
about 10-35 s for the full 232,725-row file on 2 busy CPUs, which is more than
gunicorn's default 30 s worker timeout (a worker that takes longer to boot is
killed and restarted, for ever).
"""
timeout = 120

# gunicorn answers requests over these limits itself, with a small HTML page
# (text escaped) and none of the app's JSON or security headers. The request
# line gets gunicorn's largest allowed value (its default is 4,094), so that a
# lookup with two 500-character names reaches the app, which answers query
# strings over 8,000 bytes with a JSON 414; only lines over 8,190 bytes get
# gunicorn's 400. Headers keep gunicorn's defaults (431 beyond them).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
