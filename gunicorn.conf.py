"""Settings gunicorn reads from the working directory (its default config file).

A worker starts in about a second: it reads no data file and predicts nothing at
start; it loads the model bundles and opens the catalog (a SQLite file or a
PostgreSQL pool) on its first request, after the fork, and checks every second
for a new pair. gunicorn's 30 s worker timeout is then ample: a worker that
stops answering is restarted instead of hanging.
"""
timeout = 30

# gunicorn answers requests over these limits itself, with a small HTML page
# (text escaped) and none of the app's JSON or security headers. The request
# line gets gunicorn's largest allowed value (its default is 4,094), so that a
# lookup with two 500-character names reaches the app, which answers query
# strings over 8,000 bytes with a JSON 414; only lines over 8,190 bytes get
# gunicorn's 400. Headers keep gunicorn's defaults (431 beyond them).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
