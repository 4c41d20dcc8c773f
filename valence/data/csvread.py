"""Split the bytes of a user's CSV into records of string fields, with line numbers.

Numpy finds the record boundaries and field counts of a whole block at once;
pandas' C parser splits only the well-formed records; malformed records are
the only ones looked at one by one.
"""
import codecs
import csv
import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from valence.config import ValenceError

QUOTE, COMMA, NEWLINE = ord('"'), ord(","), ord("\n")
FALLBACK_ENCODINGS = ("cp1252", "latin-1")  # latin-1 decodes any byte, so the chain ends there
MAX_REFRAMES = 1000  # unterminated quotes recovered from per file; a bound on the work, never reached in practice


@dataclass
class ReadStats:
    """What decoding a file found out, gathered while its blocks are read."""
    sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    encodings: list = field(default_factory=list)
    nul_bytes: int = 0
    fallback_lines: int = 0  # lines that were not UTF-8 and were decoded as cp1252 or latin-1

    def used(self, encoding):
        if encoding not in self.encodings:
            self.encodings.append(encoding)


def _sniff_utf16(head):
    """Return the UTF-16 codec `head` is written in, or None for an 8-bit encoding."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = head[:4096]
    # Mostly-ASCII text in UTF-16 has a NUL in every other byte.
    if len(sample) >= 4 and sample[1::2].count(0) > 0.4 * len(sample) / 2:
        return "utf-16-le"
    if len(sample) >= 4 and sample[0::2].count(0) > 0.4 * len(sample) / 2:
        return "utf-16-be"
    return None


def _normalise(piece, stats):
    """Drop NUL bytes and turn CRLF / CR line ends into LF."""
    if b"\x00" in piece:
        stats.nul_bytes += piece.count(b"\x00")
        piece = piece.replace(b"\x00", b"")
    if b"\r" in piece:
        piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return piece


def _non_ascii_lines(piece):
    """Return the (start, end) byte spans of the lines of `piece` that hold a byte >= 0x80."""
    b = np.frombuffer(piece, dtype=np.uint8)
    newlines = np.flatnonzero(b == NEWLINE)
    lines = np.unique(np.searchsorted(newlines, np.flatnonzero(b >= 0x80)))
    bounds = np.r_[0, newlines + 1, b.size]
    return [(int(bounds[i]), int(bounds[i + 1])) for i in lines]


def _decode_8bit(piece, stats):
    """Return `piece` as UTF-8 bytes; a line that is not UTF-8 is read as cp1252, else latin-1.

    Line by line, so that a UTF-8 file with a few lines saved by another program keeps
    its UTF-8 text (a whole-file fallback would turn every "’" into "â€™").
    """
    if piece.isascii():
        stats.used("utf-8")
        return piece
    spans = _non_ascii_lines(piece)
    try:
        # Lines end in LF, which no multi-byte character contains: joined, they stay separate.
        b"".join(piece[a:b] for a, b in spans).decode("utf-8")
        stats.used("utf-8")
        return piece
    except UnicodeDecodeError:
        pass
    parts, done = [], 0
    for a, b in spans:
        line = piece[a:b]
        try:
            line.decode("utf-8")
            stats.used("utf-8")
            continue
        except UnicodeDecodeError:
            pass
        for encoding in FALLBACK_ENCODINGS:
            try:
                text = line.decode(encoding)
            except UnicodeDecodeError:
                continue
            stats.used(encoding)
            stats.fallback_lines += 1
            parts += [piece[done:a], text.encode("utf-8")]
            done = b
            break
        else:
            raise AssertionError("latin-1 decodes every byte")
    return b"".join(parts) + piece[done:]


def utf8_pieces(handle, stats, block_bytes=None):
    """Yield (normalised UTF-8 bytes, is_last) from a binary file handle, block by block."""
    read = (lambda: handle.read()) if block_bytes is None else (lambda: handle.read(block_bytes))
    block = read()
    # A byte-order mark must be seen whole, and removing it must not leave an empty first block
    # (that reads as the end of the file): start with at least 4 bytes whatever the block size.
    while block_bytes is not None and 0 < len(block) < 4:
        more = read()
        if not more:
            break
        block += more
    stats.sha256.update(block)
    codec = _sniff_utf16(block)
    if codec is not None:
        decoder = codecs.getincrementaldecoder(codec)()
        stats.used(codec)
    elif block.startswith(codecs.BOM_UTF8):
        block = block[len(codecs.BOM_UTF8):]
    pending, held_cr = b"", b""
    while True:
        following = read() if block and block_bytes is not None else b""
        stats.sha256.update(following)
        last = not following
        if codec is not None:
            try:
                data = held_cr + decoder.decode(block, final=last).encode("utf-8")
            except UnicodeDecodeError as error:
                raise ValenceError(f"cannot decode {handle.name} as {codec}: {error.reason} "
                                   f"at byte {error.start}") from None
            # A CR at the end may be the first half of a CRLF split across blocks.
            held_cr = b"\r" if data.endswith(b"\r") and not last else b""
            yield _normalise(data[: len(data) - len(held_cr)], stats), last
        else:
            data = pending + block
            # Cut at a line end so that no multi-byte character is split between blocks.
            cut = len(data) if last else data.rfind(b"\n") + 1
            pending = data[cut:]
            if cut or last:
                yield _normalise(_decode_8bit(data[:cut], stats), stats), last
        if last:
            return
        block = following


@dataclass
class Records:
    """The complete records of one block: byte spans, first lines and field counts."""
    buf: bytes
    starts: np.ndarray    # first byte of each record
    ends: np.ndarray      # one past its last byte, line end excluded
    spans: np.ndarray     # one past its line end: where the next record starts
    lines: np.ndarray     # 1-based physical line on which the record starts
    fields: np.ndarray    # number of comma-separated fields
    open_quote: np.ndarray  # a quoted field runs to the end of the file
    base_line: int          # physical line on which buf starts

    def __len__(self):
        return len(self.starts)

    def text(self, i):
        """Return record `i` as text (for messages and the header)."""
        return self.buf[self.starts[i]:self.ends[i]].decode("utf-8", errors="replace")


def _active_quotes(b, quotes):
    """Return the positions of the quotes that open or close a quoted field."""
    if quotes.size == 0:
        return quotes
    prev = np.where(quotes > 0, b[quotes - 1], NEWLINE)
    nxt = np.where(quotes + 1 < b.size, b[np.minimum(quotes + 1, b.size - 1)], NEWLINE)
    adjacent = np.diff(quotes) == 1
    opens_ok = (prev == COMMA) | (prev == NEWLINE) | np.r_[False, adjacent]
    closes_ok = (nxt == COMMA) | (nxt == NEWLINE) | np.r_[adjacent, False]
    if np.where(np.arange(quotes.size) % 2 == 0, opens_ok, closes_ok).all():
        return quotes  # every quote is a field's opener, closer or a doubled "": parity works
    # A stray quote inside an unquoted field is literal (as for pandas and the csv module):
    # walk the quotes, not the bytes, to find the ones that count.
    active, inside, i, positions = [], False, 0, quotes.tolist()
    while i < len(positions):
        p = positions[i]
        if inside:
            if i + 1 < len(positions) and positions[i + 1] == p + 1:
                i += 2  # a doubled quote inside a quoted field
                continue
            inside = False
            active.append(p)
        elif p == 0 or b[p - 1] in (COMMA, NEWLINE):
            inside = True
            active.append(p)
        i += 1
    return np.array(active, dtype=np.int64)


class Framer:
    """Cut a stream of UTF-8 pieces into whole records, keeping line numbers right."""

    def __init__(self):
        self.carry = b""
        self.line = 1  # physical line on which `carry` starts

    def feed(self, piece, last):
        """Return the complete Records of carry + piece; keep an incomplete tail for later."""
        buf = self.carry + piece
        records = _frame(buf, 0, self.line, self.line, last)
        for _ in range(MAX_REFRAMES):
            if not (last and len(records) and records.open_quote[-1]):
                break
            # A quote that never closes would swallow every later line into one bad record:
            # keep only its first line as the bad record and frame the lines after it again.
            cut = buf.find(b"\n", records.starts[-1], records.ends[-1])
            if cut < 0:
                break
            rest = _frame(buf, cut + 1, int(records.lines[-1]) + 1, self.line, True)
            records = _cut_last(records, cut, rest)
        self.keep(records, len(records))
        return records

    def keep(self, records, first):
        """Hand records[first:] and the tail back, to be framed again with the next piece."""
        start = records.starts[first] if first < len(records) else (
            records.spans[-1] if len(records) else 0)
        self.carry = records.buf[start:]
        self.line = records.base_line + records.buf.count(b"\n", 0, start)


def _frame(buf, lo, first_line, base_line, last):
    """Return the Records of buf[lo:], whose first byte is on line `first_line`."""
    b = np.frombuffer(buf, dtype=np.uint8)[lo:]
    quotes = _active_quotes(b, np.flatnonzero(b == QUOTE))
    newlines = np.flatnonzero(b == NEWLINE)
    separators = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    starts = np.r_[0, separators + 1]
    ends = np.r_[separators, b.size]
    if not last or starts[-1] == b.size:
        starts, ends = starts[:-1], ends[:-1]  # an incomplete tail, or nothing after the last LF
    stop = b.size if last else (separators[len(starts) - 1] + 1 if len(starts) else 0)
    spans = np.r_[starts[1:], stop] if len(starts) else starts
    commas = np.flatnonzero(b[:stop] == COMMA)
    if quotes.size:
        commas = commas[np.searchsorted(quotes, commas) % 2 == 0]
    return Records(
        buf=buf, starts=lo + starts, ends=lo + ends, spans=lo + np.maximum(spans, ends),
        lines=first_line + np.searchsorted(newlines, starts),
        fields=np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1,
        open_quote=(np.searchsorted(quotes, ends) - np.searchsorted(quotes, starts)) % 2 == 1,
        base_line=base_line,
    )


def _cut_last(records, cut, rest):
    """Return `records` with its last record cut at the line end `cut`, then the records of `rest`."""
    start = records.starts[-1]
    head = {"starts": records.starts, "ends": np.r_[records.ends[:-1], cut],
            "spans": np.r_[records.spans[:-1], cut + 1], "lines": records.lines,
            "fields": np.r_[records.fields[:-1], records.buf.count(b",", start, cut) + 1],
            "open_quote": records.open_quote}
    return Records(buf=records.buf, base_line=records.base_line,
                   **{name: np.r_[part, getattr(rest, name)] for name, part in head.items()})


def header_fields(text):
    """Split a header line into its field names."""
    try:
        return next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error:
        return text.split(",")


def parse_fields(records, lo, hi, good, n_fields, usecols, numeric=()):
    """Return a frame of records[lo:hi] where `good`, columns `usecols`.

    Columns in `numeric` come back as float64 when every cell of them is a number,
    which is fast; otherwise every column comes back as strings.
    """
    if not good.any():
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in usecols})
    first, stop = records.starts[lo], records.spans[hi - 1]
    whole = np.frombuffer(records.buf, dtype=np.uint8)[first:stop]
    if not good.all():
        whole = whole[np.repeat(good, records.spans[lo:hi] - records.starts[lo:hi])]
    data = whole.tobytes()
    for dtype in ({c: np.float64 if c in numeric else str for c in usecols}, str):
        try:
            frame = pd.read_csv(io.BytesIO(data), header=None, names=range(n_fields),
                                usecols=usecols, dtype=dtype, na_filter=False, engine="c",
                                skip_blank_lines=False, encoding="utf-8", encoding_errors="replace")
        except (pd.errors.ParserError, ValueError, OverflowError):
            continue
        if len(frame) == int(good.sum()):
            return frame
    # pandas disagreed with the framing (never seen): parse each record on its own.
    rows = [header_fields(records.text(i)) for i in np.flatnonzero(good) + lo]
    return pd.DataFrame([[row[c] for c in usecols] for row in rows], columns=usecols, dtype=object)
