"""The server's VALENCE_* settings: each read from the environment by one parser, with one message when refused.

gunicorn.conf.py checks them when gunicorn starts (a bad value stops it with that
message, before any worker boots), and create_app reads them with the same parsers,
so a value means the same to both. An empty value is the same as none: the default.
"""
import math
import os

from valence.config import ValenceError

TRUE, FALSE = frozenset(("1", "true", "yes", "on")), frozenset(("0", "false", "no", "off"))


def text(name, value):
    """Return a path or URL setting as text."""
    return str(value)


def flag(name, value):
    """Return an on/off setting as a bool; refuse text that is not clearly on or off."""
    if isinstance(value, bool):
        return value
    spelled = str(value).strip().lower()
    if spelled in TRUE or spelled in FALSE:
        return spelled in TRUE
    raise ValenceError(f"{name}={str(value)[:40]!r} is not understood: use 1, true, yes or on (on), "
                       "or 0, false, no or off (off)")


def seconds(name, value):
    """Return a number of seconds, 0 or more."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ValenceError(f"{name}={str(value)[:40]!r} is not understood: use a number of seconds, 0 or more "
                           "(such as 1 or 0.5)")
    return number


# Each setting, its parser and its default (None: worked out from the others).
SETTINGS = {
    "VALENCE_MODEL_DIR": (text, None),
    "VALENCE_CATALOG": (text, None),
    "VALENCE_RELOAD_SECONDS": (seconds, 1.0),
    "VALENCE_METRICS": (flag, True),
    "VALENCE_LOG_REQUESTS": (flag, True),
    "VALENCE_LOG_LOOKUP_NAMES": (flag, False),
}


def parse(name, value):
    """Return a setting's value read by its parser; None and empty text mean its default."""
    parser, default = SETTINGS[name]
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return parser(name, value)


def from_environment(environ=None):
    """Return every setting the environment gives, parsed; raise ValenceError naming the first bad one."""
    environ = os.environ if environ is None else environ
    return {name: parse(name, environ[name]) for name in SETTINGS if environ.get(name, "").strip()}
