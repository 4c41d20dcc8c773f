"""The page at / as served: HTML with its own CSP, nothing from another origin, labelled controls,
browsers at /predict sent to it while API clients keep their JSON. (In a real browser: test_page_browser.py.)"""
import re
from html.parser import HTMLParser

import pytest

from conftest import served

from valence import config
from valence.api.page import PAGE_CSP

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


class Controls(HTMLParser):
    """Collect the ids of inputs and selects, the for= of labels, and every src/href."""

    def __init__(self):
        super().__init__()
        self.controls, self.labelled, self.links = [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("input", "select"):
            self.controls.append(attrs.get("id"))
        if tag == "label" and "for" in attrs:
            self.labelled.add(attrs["for"])
        self.links += [attrs[name] for name in ("src", "href") if name in attrs]


def parsed(html):
    controls = Controls()
    controls.feed(html)
    return controls


def test_the_page_is_html_under_its_own_content_security_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == PAGE_CSP
    assert "script-src 'self'" in PAGE_CSP and "unsafe-inline" not in PAGE_CSP
    assert page.headers["X-Frame-Options"] == "DENY"  # the other security headers stay
    # Every other answer keeps the strict policy.
    assert client.get("/health").headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_the_page_loads_nothing_from_another_origin(client):
    html = client.get("/").get_data(as_text=True)
    links = parsed(html).links
    assert links and all(link.startswith(("/", "data:")) for link in links), links
    assert "<script>" not in html and " style=" not in html and "onclick" not in html  # nothing inline
    for name in ("app.js", "style.css"):
        text = client.get(f"/static/{name}").get_data(as_text=True)
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), name


def test_every_control_has_a_label_and_the_form_starts_at_the_typical_song(app, client):
    controls = parsed(client.get("/").get_data(as_text=True))
    # The search box, one per feature, and the file to score.
    assert len(controls.controls) == 1 + len(config.FEATURE_COLUMNS) + 1 and controls.controls[-1] == "score-file"
    assert set(controls.controls) <= controls.labelled
    background = served(app).explainer.background
    html = client.get("/").get_data(as_text=True)
    assert f'id="f-tempo" name="tempo" type="range"' in html
    assert re.search(rf'id="f-tempo"[^>]*value="{background["tempo"]}"', html)
    assert re.search(rf'<option selected>{re.escape(background["key"])}</option>', html)


def test_static_files_are_served_with_their_types(client):
    assert client.get("/static/app.js").mimetype == "text/javascript"
    assert client.get("/static/style.css").mimetype == "text/css"
    assert client.get("/static/nothing.js").status_code == 404


def test_without_a_model_the_page_says_why_and_how_to_train(make_app, tmp_path):
    html = make_app(model_dir=tmp_path).test_client().get("/").get_data(as_text=True)
    assert "No model is loaded, so nothing can be predicted yet" in html
    assert "python musical_valence_predictor.py --model both" in html
    assert 'data-ready="false"' in html


def test_with_only_a_classifier_the_page_says_it_needs_a_regression_model(mood_app):
    page = mood_app.test_client().get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-ready="false"' in html
    assert ("No regression model is loaded (regression.safetensors is not in the model folder), and this page "
            "shows predicted valence and its reasons") in html
    assert "python musical_valence_predictor.py --model regression" in html


def test_without_a_catalog_the_search_is_off_but_your_own_song_works(make_app, tmp_path):
    html = make_app(catalog=tmp_path / "absent.sqlite").test_client().get("/").get_data(as_text=True)
    assert 'data-ready="true" data-catalog="false"' in html
    assert "The catalog is not loaded" in html


@pytest.mark.parametrize(("query", "target"), [
    ("", "/"),
    ("?track_id=TWINHIGH00000000000001", "/?track_id=TWINHIGH00000000000001"),
    ("?artist_name=Twin%20Artist&track_name=Same%20Song", "/?artist_name=Twin%20Artist&track_name=Same%20Song"),
    ("?artist_name=Twin%20Artist", "/?artist_name=Twin%20Artist"),  # the page shows the API's error
])
def test_a_browser_opening_predict_is_sent_to_the_page(client, query, target):
    answer = client.get(f"/predict{query}", headers={"Accept": BROWSER})
    assert answer.status_code == 303 and answer.location == target


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, text/html;q=0.5"])
@pytest.mark.parametrize("query", ["", "?track_id=TWINHIGH00000000000001", "?artist_name=x"])
def test_api_clients_keep_their_json_answers(client, accept, query):
    headers = {"Accept": accept} if accept else {}
    answer = client.get(f"/predict{query}", headers=headers)
    plain = client.get(f"/predict{query}")
    assert answer.mimetype == "application/json" and answer.status_code == plain.status_code
    assert answer.get_json() == plain.get_json()


# ---- issue 24, point 1: the page's training hint writes where this server reads ------------------------------

def test_the_train_hint_names_the_served_folder_inside_the_project(make_app):
    import shutil

    from valence import config

    folder = config.PROJ_ROOT / "build" / "test-page-hint-models"  # inside the project: named as it is
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.mkdir(parents=True)
        html = make_app(model_dir=folder, catalog=folder / "catalog.sqlite").test_client().get("/").get_data(
            as_text=True)
        assert ("Train one with: python musical_valence_predictor.py --model both --model-dir "
                "build/test-page-hint-models") in html
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_train_hint_of_a_folder_outside_the_project_names_the_setting_not_the_folder(make_app, tmp_path):
    html = make_app(model_dir=tmp_path, catalog=tmp_path / "catalog.sqlite").test_client().get("/").get_data(
        as_text=True)
    assert "python musical_valence_predictor.py --model both --model-dir DIR" in html
    assert "VALENCE_MODEL_DIR" in html and str(tmp_path) not in html


def test_the_mood_only_hint_names_the_folder_too(mood_app):
    html = mood_app.test_client().get("/").get_data(as_text=True)
    assert "python musical_valence_predictor.py --model regression --model-dir" in html


def test_score_a_file_shows_the_size_limit_before_upload_and_posts_to_invocations_only(client):
    html = client.get("/").get_data(as_text=True)
    assert 'data-max-bytes="67108864" data-max-songs="100000"' in html
    assert "At most 100,000 songs in 64 MiB (67,108,864 bytes) per file." in html
    script = client.get("/static/app.js").get_data(as_text=True)
    assert '"/invocations?format=predict"' in script  # the route the API documents, not one of the page's own
