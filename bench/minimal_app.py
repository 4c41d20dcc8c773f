"""The yardstick for bench/api_speed.py: a Flask app that answers a constant JSON body."""
from flask import Flask


def create_app():
    """Build an app with one route that returns a small constant JSON object."""
    app = Flask(__name__)

    @app.get("/")
    def constant():
        """Answer the same JSON every time."""
        return {"status": "ok"}

    return app
