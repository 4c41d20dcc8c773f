"""Small answers whose text operators and clients act on: the 413's limit, an empty search."""
import json
import re
from pathlib import Path

import pytest

from test_api import SONG

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_a_body_over_the_byte_limit_says_the_limit_in_bytes_and_its_size_not_a_song_count(client):
    songs = [dict(SONG, artist_name="A" * 600, track_name="T" * 600) for _ in range(1000)]  # 1,000 songs, long names
    body = json.dumps(songs)
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 413
    message = response.json["message"]
    assert "1,048,576 bytes" in message and f"{len(body):,} bytes" in message
    assert "1,000 songs" not in message  # it had 1,000 songs: the byte limit is what it hit


@pytest.mark.parametrize("query", ["q=", "q=%20%20"])
def test_an_empty_search_answers_no_results_as_the_docs_say(client, query):
    response = client.get(f"/search?{query}")
    assert response.status_code == 200 and response.json["results"] == []
    text = re.sub(r"\s+", " ", (DOCS / "api.md").read_text())
    assert "an empty or blank `q` (`/search?q=`, the box cleared) answers 200 with no results" in text


def test_a_search_without_q_is_a_400(client):
    response = client.get("/search")
    assert response.status_code == 400 and response.json["missing"] == ["q"]
