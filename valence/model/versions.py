"""What a track name says besides the song: its release's version marker, and the song title without it."""
import re

import numpy as np
import pandas as pd

from valence.config import normalise_name

# A categorical the encoder reads off the track name: the release's version marker, as Spotify titles write it
# after " - " or in brackets ("Body Count - Remix", "Toi - live", "Falling (Acoustic Version)"). The first
# marker that matches names it; a title without one (or no title) is "none". The audio features alone read a
# remix as happier and an acoustic version as sadder than they are (docs/quality.md has the measurements).
VERSION = "version"
VERSION_MARKERS = (
    # "Original Mix" is a dance track's own version, and a mono or stereo mix is another version.
    ("remix", r"\b(?:remix|rmx|dub)\b|(?<!original )(?<!mono )(?<!stereo )\bmix\b"),
    ("acoustic", r"\b(?:acoustic|unplugged|stripped|piano version)\b"),
    # A qualifier that starts with live, or a live recording somewhere ("can't live without" is no concert).
    ("live", r"(?:^|\| )live\b|\blive (?:at|from|in|on|version|recording|session)\b|\b(?:en|ao) vivo\b"),
    ("instrumental", r"\b(?:instrumental|karaoke)\b"),
    ("remaster", r"\bremaster"),
    ("edit", r"\bedit(?:ed)?\b"),
    ("version", r"\b(?:version|mono|stereo|demo|take|sessions?)\b"),
    # "with" counts at a qualifier's start only ("Jealous (I Ain't With It)" features nobody).
    ("featuring", r"\b(?:feat|featuring|ft)\b|(?:^|\| )with\b"),
)
NO_VERSION = "none"
_MARKERS = [(label, re.compile(pattern)) for label, pattern in VERSION_MARKERS]
_ANY_MARKER = re.compile("|".join(pattern for _label, pattern in VERSION_MARKERS))  # one search rules most out
_QUALIFIERS = re.compile(r"[(\[]([^)\]]*)[)\]]")
_BRACKETS = re.compile(r"[(\[][^)\]]*[)\]]")
_NON_WORD = re.compile(r"\W+")


def title_version(title):
    """The version marker of a track name: the first of VERSION_MARKERS found in its qualifiers (the text
    in brackets and after the first " - "), else "none"; the title is read as names are matched
    (config.normalise_name), so full-width brackets and a dash between non-breaking spaces count too."""
    if not isinstance(title, str):
        return NO_VERSION
    title = normalise_name(title)
    if not ("(" in title or "[" in title or " - " in title):
        return NO_VERSION  # most titles: no qualifier to read
    qualifiers = _QUALIFIERS.findall(title)
    if " - " in title:
        qualifiers.append(title.split(" - ", 1)[1])
    text = " | ".join(qualifiers)  # the markers that must start a qualifier look for "^" or "| "
    if not _ANY_MARKER.search(text):
        return NO_VERSION
    return next(label for label, marker in _MARKERS if marker.search(text))


def versions(frame):
    """Each row's title_version (none for a frame without track names), each distinct title read once."""
    if "track_name" not in frame.columns:
        return np.full(len(frame), NO_VERSION, dtype=object)
    codes, uniques = pd.factorize(frame["track_name"].to_numpy(dtype=object), use_na_sentinel=False)
    return np.array([title_version(t) for t in uniques] or [NO_VERSION], dtype=object)[codes]


def song_title(title):
    """A track name without its qualifiers (brackets, the text after the first " - "), words only, as names
    are matched (config.normalise_name first: a decomposed accent is a mark that \\W would split a word at)."""
    if not isinstance(title, str):
        return ""
    title = _BRACKETS.sub(" ", normalise_name(title).split(" - ", 1)[0])
    return " ".join(_NON_WORD.sub(" ", title).split())

