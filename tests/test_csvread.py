"""Unit tests of valence.data.csvread: decoding blocks of bytes and framing them into records with line numbers."""
import codecs
import hashlib

import numpy as np
import pytest

from valence.config import ValenceError
from valence.data.csvread import Framer, ReadStats, _decode_8bit, _normalise, _sniff_utf16, header_fields, parse_fields, \
    utf8_pieces


def read_all(path, block_bytes=None):
    """Return (the joined UTF-8 text, stats, the is_last flags) of a file read through utf8_pieces."""
    stats = ReadStats()
    with open(path, "rb") as handle:
        pieces = list(utf8_pieces(handle, stats, block_bytes))
    return b"".join(p for p, _ in pieces).decode("utf-8"), stats, [last for _, last in pieces]


def frame_all(chunks):
    """Feed byte chunks to one Framer; return [(line, fields, open_quote, text)] of every record."""
    framer, out = Framer(), []
    for i, chunk in enumerate(chunks):
        records = framer.feed(chunk, i == len(chunks) - 1)
        out += [(int(records.lines[j]), int(records.fields[j]), bool(records.open_quote[j]), records.text(j))
                for j in range(len(records))]
    return out


@pytest.mark.parametrize(("head", "codec"), [
    (codecs.BOM_UTF16_LE + "a,b\n".encode("utf-16-le"), "utf-16"),
    (codecs.BOM_UTF16_BE + "a,b\n".encode("utf-16-be"), "utf-16"),
    ("genre,tempo\n".encode("utf-16-le"), "utf-16-le"),
    ("genre,tempo\n".encode("utf-16-be"), "utf-16-be"),
    (b"genre,tempo\n", None),
    ("café,ü\n".encode("utf-8"), None),
    (b"ab", None),  # too short to tell
])
def test_sniff_utf16(head, codec):
    assert _sniff_utf16(head) == codec


def test_normalise_turns_every_line_end_into_lf_and_counts_nul_bytes():
    stats = ReadStats()
    assert _normalise(b"a\r\nb\rc\n\x00d\x00\r\n", stats) == b"a\nb\nc\nd\n"
    assert stats.nul_bytes == 2
    assert _normalise(b"plain\n", stats) == b"plain\n" and stats.nul_bytes == 2


def test_decode_8bit_keeps_utf8_lines_and_decodes_only_the_others():
    stats = ReadStats()
    piece = "café\n".encode("utf-8") + b"na\x92ve\n" + b"x\x81y\n"  # 0x92 is cp1252's ’; 0x81 is undefined there
    assert _decode_8bit(piece, stats).decode("utf-8") == "café\nna\u2019ve\nx\x81y\n"
    assert stats.encodings == ["utf-8", "cp1252", "latin-1"]
    assert stats.fallback_lines == 2
    ascii_stats = ReadStats()
    assert _decode_8bit(b"a,b\n", ascii_stats) == b"a,b\n" and ascii_stats.encodings == ["utf-8"]


@pytest.mark.parametrize("block_bytes", [None, 4, 5, 7])
def test_utf8_pieces_in_any_block_size_give_the_same_text_and_hash(tmp_path, block_bytes):
    text = "genre,name\r\nPop,Beyoncé\r\nJazz,Ménage à trois\n"
    raw = codecs.BOM_UTF8 + text.encode("utf-8")
    path = tmp_path / "songs.csv"
    path.write_bytes(raw)
    joined, stats, lasts = read_all(path, block_bytes)
    assert joined == text.replace("\r\n", "\n")  # the BOM is dropped, multi-byte letters survive the cuts
    assert stats.sha256.hexdigest() == hashlib.sha256(raw).hexdigest()
    assert lasts[-1] is True and not any(lasts[:-1])


@pytest.mark.parametrize("block_bytes", [None, 3, 4, 5])
def test_utf16_with_crlf_split_between_blocks(tmp_path, block_bytes):
    text = "a,b\r\n1,ü\r\n"
    path = tmp_path / "songs.csv"
    path.write_bytes(text.encode("utf-16"))
    joined, stats, _ = read_all(path, block_bytes)
    assert joined == "a,b\n1,ü\n"  # a CR at a block's end is held until its LF arrives: no extra line
    assert stats.encodings == ["utf-16"]


def test_undecodable_utf16_names_the_file_and_the_codec(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_bytes(codecs.BOM_UTF16_LE + "a,b\n".encode("utf-16-le") + b"\x00\xd8")  # a lone high surrogate
    with pytest.raises(ValenceError, match=r"cannot decode .*broken\.csv as utf-16"):
        read_all(path)


def test_framer_counts_fields_and_lines_across_quoted_newlines_and_pieces():
    records = frame_all([b'a,b,c\n1,"x\ny",3\n4,5', b',6\n"q,""uoted""",8,9\n'])
    assert records == [(1, 3, False, "a,b,c"), (2, 3, False, '1,"x\ny",3'), (4, 3, False, "4,5,6"),
                       (5, 3, False, '"q,""uoted""",8,9')]


def test_an_unterminated_quote_costs_only_its_own_line():
    records = frame_all([b'a,b,c\n1,"oops,3\n4,5,6\n7,8,9\n'])
    assert records == [(1, 3, False, "a,b,c"), (2, 3, True, '1,"oops,3'), (3, 3, False, "4,5,6"),
                       (4, 3, False, "7,8,9")]


def test_a_stray_quote_inside_an_unquoted_field_is_literal():
    records = frame_all([b'a,b\n12" vinyl,2\n3,4\n'])
    assert [(line, fields) for line, fields, _, _ in records] == [(1, 2), (2, 2), (3, 2)]


def test_header_fields_reads_quoted_names():
    assert header_fields('genre,"artist, name",track_id') == ["genre", "artist, name", "track_id"]
    assert header_fields("") == []


def test_parse_fields_reads_numbers_as_floats_or_everything_as_strings():
    records = Framer().feed(b"Pop,1.5,x\nRock,2,y\nJazz,oops,z\n", True)
    every = np.ones(3, dtype=bool)
    frame = parse_fields(records, 0, 2, every[:2], 3, [0, 1], numeric=[1])
    assert frame[1].dtype == np.float64 and frame[1].tolist() == [1.5, 2.0]
    frame = parse_fields(records, 0, 3, every, 3, [0, 1], numeric=[1])  # "oops" is no number: all strings
    assert frame[1].tolist() == ["1.5", "2", "oops"] and frame[0].tolist() == ["Pop", "Rock", "Jazz"]
    frame = parse_fields(records, 0, 3, np.array([True, False, True]), 3, [0, 2])
    assert frame[0].tolist() == ["Pop", "Jazz"] and frame[2].tolist() == ["x", "z"]
    empty = parse_fields(records, 0, 3, np.zeros(3, dtype=bool), 3, [0, 2])
    assert len(empty) == 0 and list(empty.columns) == [0, 2]


@pytest.mark.parametrize("block_bytes", [1, 2, 3])
def test_a_byte_order_mark_is_removed_whatever_the_block_size(tmp_path, block_bytes):
    raw = codecs.BOM_UTF8 + b"a,b\n1,2\n"
    path = tmp_path / "bom.csv"
    path.write_bytes(raw)
    text, stats, lasts = read_all(path, block_bytes)
    assert text == "a,b\n1,2\n" and lasts[-1] is True and lasts.count(True) == 1
    assert stats.sha256.hexdigest() == hashlib.sha256(raw).hexdigest()  # every byte hashed once
