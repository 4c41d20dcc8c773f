"""How names are matched and ranked: close-name suggestions (rapidfuzz) and the limits of a search."""
from rapidfuzz import fuzz, process

from valence import config

SUGGESTIONS = 5
SEARCH_RESULTS = 10  # songs a search answers at most
MAX_FUZZY = 60  # characters of a name compared when suggesting
MAX_FUZZY_TRACKS = 1000  # of one artist's tracks, most popular first: bounds the work of a lookup
CLOSE_ARTISTS = 3  # artists whose tracks are searched when the one asked for is unknown
ARTIST_CUTOFF = 60  # least similarity (0-100, rapidfuzz's ratio) of a suggested artist
TRACK_CUTOFF = 50  # and of a suggested track name


normalise = config.normalise_name  # the one rule for matching names, shared with the encoder


def closest(query, names, limit, cutoff):
    """Return the positions of up to `limit` names at least `cutoff` similar to query, best first.

    Similarity is rapidfuzz's ratio (0-100, from the insertions and deletions that turn one
    name into the other); equal scores keep the order of `names`, so list the preferred first.
    """
    matches = process.extract(query, names, scorer=fuzz.ratio, limit=limit, score_cutoff=cutoff)
    return [position for _name, _score, position in matches]


def rank_pairs(artist, track, pairs):
    """Return the positions of (artist, track) name pairs, closest to the pair asked for first.

    The score is the sum of both names' ratios, so a misspelt artist's right song outranks the
    same title by another artist; equal scores keep the order of `pairs`.
    """
    scores = [fuzz.ratio(artist, their_artist) + fuzz.ratio(track, their_track) for their_artist, their_track in pairs]
    return sorted(range(len(pairs)), key=lambda position: -scores[position])
