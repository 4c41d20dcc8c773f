"""Paths, schema and defaults, defined once (importing this module reads no file)."""
import functools
import unicodedata
from dataclasses import dataclass
from pathlib import Path

# A checkout keeps data/ and models/ beside the code; an installed copy (pip install .) keeps them in the
# folder the tool runs from, as site-packages is no place for a user's files.
CODE_ROOT = Path(__file__).resolve().parents[1]
PROJ_ROOT = CODE_ROOT if (CODE_ROOT / "pyproject.toml").is_file() else Path.cwd()
DATA_DIR = PROJ_ROOT / "data"
MODELS_DIR = PROJ_ROOT / "models"
FIGURES_DIR = PROJ_ROOT / "docs" / "figures"
DEFAULT_DATA = DATA_DIR / "spotify_features.csv"
DEMO_DATA = DATA_DIR / "demo_features.csv"

KAGGLE_URL = "https://www.kaggle.com/datasets/zaheenhamidani/ultimate-spotify-tracks-db"

# The Kaggle file's 18 columns, in its order.
ID_COLUMNS = ("genre", "artist_name", "track_name", "track_id")
NUMERIC_FEATURES = (
    "popularity", "acousticness", "danceability", "duration_ms", "energy",
    "instrumentalness", "liveness", "loudness", "speechiness", "tempo",
)
CATEGORICAL_FEATURES = ("genre", "key", "mode", "time_signature")
TARGET = "valence"
KAGGLE_COLUMNS = (
    "genre", "artist_name", "track_name", "track_id", "popularity",
    "acousticness", "danceability", "duration_ms", "energy",
    "instrumentalness", "key", "liveness", "loudness", "mode", "speechiness",
    "tempo", "time_signature", "valence",
)
# What a song needs for a prediction (valence is the answer, never an input).
FEATURE_COLUMNS = tuple(c for c in KAGGLE_COLUMNS if c not in ("artist_name", "track_name", "track_id", TARGET))
# The groups an explanation gives a contribution to: each feature, the version marker the encoder reads off
# the track name (versions.title_version), and all artist statistics as one.
EXPLANATION_GROUPS = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, "version", "artist")

KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES = ("Major", "Minor")
TIME_SIGNATURES = ("0/4", "1/4", "3/4", "4/4", "5/4")

# Plausible ranges for validation; values outside mark a row as bad.
NUMERIC_RANGES = {
    "popularity": (0.0, 100.0),
    "acousticness": (0.0, 1.0),
    "danceability": (0.0, 1.0),
    "duration_ms": (1.0, 1e8),
    "energy": (0.0, 1.0),
    "instrumentalness": (0.0, 1.0),
    "liveness": (0.0, 1.0),
    "loudness": (-100.0, 10.0),
    "speechiness": (0.0, 1.0),
    "tempo": (0.0, 400.0),
}

# Mood classes: sad below 0.35, neutral 0.35 to 0.65, happy above 0.65.
CLASS_EDGES = (0.35, 0.65)
CLASS_NAMES = ("sad", "neutral", "happy")

MODEL_KINDS = ("regression", "classification")


@dataclass(frozen=True)
class SplitConfig:
    """How the data is split into train, validation and test sets (by track_id)."""

    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.2

BUNDLE_FORMAT = 7  # bump when a saved bundle's layout changes (3: cross-fitted fold models, "split" holds the FoldPlan;
# 5: a safetensors file, arrays as tensors and the rest as JSON; 6: names matched by NAME_RULE 2, recorded;
# 7: a regression bundle holds its interval model, a classification bundle its probabilities' temperature)

# The version of normalise_name's rule. Bundles (their encoder state) and catalogs record the rule their
# names were folded by, and are refused when it is not this one: a name folded by another rule would
# silently miss (1: case folded, whitespace collapsed; 2: Unicode NFKC too).
NAME_RULE = 2


# Cached: a training run folds each artist's name dozens of times. Bounded, as a server folds names
# from requests too: 65,536 names are a few MiB.
@functools.lru_cache(maxsize=1 << 16)
def normalise_name(text):
    """Return a name as matching compares it: Unicode NFKC, case folded, whitespace collapsed.

    The one rule for matching names: artist statistics (fit and transform), song versions, catalog
    lookups, suggestions and search, and the warnings about unseen artists all match names through it,
    so "Queen", "queen " and "QUEEN" are one artist, and so are "Céline Dion" typed composed and
    decomposed ("Ce" U+0301 "line"), full-width letters and their ASCII, and names spaced with U+00A0.
    NFKC runs before and after casefold, as casefold can undo a normal form (U+01F0 folds to "j" U+030C):
    the result is a fixed point, so normalising it again changes nothing.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


def counted(n, noun):
    """Return "1 row", "2 rows", "1,000 rows": a count and its noun, singular when it is one."""
    return f"{n:,} {noun if n == 1 else noun + 's'}"


class ValenceError(Exception):
    """An error the user caused and can fix; the CLI prints it and exits 2."""


def bundle_path(model_dir, kind):
    """Return where the bundle of a model kind lives."""
    return Path(model_dir) / f"{kind}.safetensors"


# Where bundle_path pointed before bundles were safetensors files (torch.save's format, refused with a hint).
EARLIER_BUNDLE_SUFFIX = ".pt"


def metrics_path(model_dir, kind):
    """Return where the metrics of a model kind live."""
    return Path(model_dir) / f"{kind}.metrics.json"
