"""The page in a real browser: headless Chromium from Debian's packages, driven by selenium, against a real server.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`apt-get install chromium chromium-driver`); without them
the tests skip, except under CI=true, where they fail. VALENCE_SCREENSHOT=docs/page.png saves the screenshot
the README shows.
"""
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from werkzeug.serving import make_server

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
WAIT_S = 20  # generous: the machine running the suite may be busy
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1000,1400")


def browser_missing():
    """Return why the browser tests cannot run here, or None."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    return f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)" if missing else None


@pytest.fixture(scope="module")
def webdriver_module():
    reason = browser_missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run under CI: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    return webdriver


class Server:
    """A Flask app served by werkzeug on 127.0.0.1 in a thread."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def json(self, path):
        """Return the JSON answer of a GET, as an API client gets it."""
        with urllib.request.urlopen(self.origin + path, timeout=30) as answer:
            return json.load(answer)

    def stop(self):
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(app):
    running = Server(app)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(webdriver_module, tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must never download anything
    options = webdriver_module.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver_module.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def console_errors(driver, allowed=()):
    """Return the browser console's errors since the last call, but those containing an allowed text."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and not any(text in entry["message"] for text in allowed)]


def foreign_requests(driver, origin):
    """Return the URLs the page asked for since the last call that are not of the server's origin."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    # chrome:// pages are the browser's own (its start page), not requests the page made.
    return [url for url in urls if not url.startswith((origin + "/", "data:", "chrome:", "about:"))]


def wait_for(driver, condition, what):
    """Wait until condition(driver) is truthy; return its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(condition, message=f"waiting for {what}")


def by_id(driver, name):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, name)


def chart(driver, list_id):
    """Return the chart's rows as (group, value) in the order shown."""
    from selenium.webdriver.common.by import By

    rows = by_id(driver, list_id).find_elements(By.TAG_NAME, "li")
    return [(row.get_attribute("data-group"), float(row.get_attribute("data-value"))) for row in rows]


def open_page(driver, server, path="/"):
    """Load a page of the server, forgetting the logs of what came before."""
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(server.origin + path)
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete", "the page")


def test_search_pick_a_suggestion_and_see_the_apis_prediction_and_explanation(browser, server):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server)
    search = by_id(browser, "search")
    search.send_keys("Twin Ar")  # part of an artist's name
    wait_for(browser, lambda d: by_id(d, "suggestions").is_displayed() and
             "Twin" in by_id(d, "suggestions").text, "suggestions")
    search.send_keys(Keys.ARROW_DOWN, Keys.ENTER)  # the first suggestion, from the keyboard
    wait_for(browser, lambda d: by_id(d, "song").is_displayed() and by_id(d, "song-chart").text, "the song card")
    track_id = browser.current_url.split("track_id=")[1]
    expected = server.json(f"/predict?track_id={track_id}")
    explained = server.json(f"/explain?track_id={track_id}")
    assert expected["artist_name"].casefold().startswith("twin")
    assert by_id(browser, "song-prediction").text == f"{expected['prediction']:.3f}"
    assert by_id(browser, "song-actual").text == f"{expected['expected']:.3f}"
    interval = expected["interval"]
    assert by_id(browser, "song-interval").text == f"{interval['low']:.3f} to {interval['high']:.3f} (90 %)"
    # The band spans low to high on the 0-1 scale: its left edge and width as shares of the bar's.
    bar = browser.find_element("css selector", "#song .scale-bar").rect
    band = by_id(browser, "band-predicted").rect
    assert (band["x"] - bar["x"]) / bar["width"] == pytest.approx(interval["low"], abs=0.01)
    assert band["width"] / bar["width"] == pytest.approx(interval["high"] - interval["low"], abs=0.01)
    assert by_id(browser, "song-honest").is_displayed()  # a training track: predicted by a model that never saw it
    assert expected["track_name"].strip() in by_id(browser, "song-title").text
    shown = chart(browser, "song-chart")
    assert dict(shown) == explained["contributions"]  # the very numbers of the JSON API
    assert [abs(v) for _, v in shown] == sorted((abs(v) for _, v in shown), reverse=True)
    assert console_errors(browser) == []
    assert foreign_requests(browser, server.origin) == []


def test_moving_a_slider_changes_the_prediction_and_its_explanation(browser, server):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server)
    wait_for(browser, lambda d: by_id(d, "own-prediction").text, "the first prediction of your own song")
    before = by_id(browser, "own-prediction").text
    assert dict(chart(browser, "own-chart"))["danceability"] == 0  # the typical song's own danceability
    slider = by_id(browser, "f-danceability")
    slider.send_keys(Keys.END)  # to the maximum, as a keyboard user would
    wait_for(browser, lambda d: by_id(d, "own-prediction").text != before, "a new prediction")
    assert dict(chart(browser, "own-chart"))["danceability"] != 0
    assert console_errors(browser) == []
    assert foreign_requests(browser, server.origin) == []


def test_a_browser_opening_predict_is_sent_to_the_page_showing_the_song(browser, server):
    open_page(browser, server, "/predict?artist_name=twin%20%20artist&track_name=same%20song")
    wait_for(browser, lambda d: by_id(d, "song").is_displayed() and by_id(d, "song-prediction").text, "the song")
    assert by_id(browser, "song-title").text.startswith("SAME SONG")
    open_page(browser, server, "/predict")
    assert browser.current_url == server.origin + "/"
    assert console_errors(browser) == []


def test_an_api_error_is_shown_as_a_sentence(browser, server):
    open_page(browser, server, "/?track_id=NO-SUCH-TRACK")
    notice = wait_for(browser, lambda d: by_id(d, "find-error").is_displayed() and by_id(d, "find-error").text,
                      "the error")
    assert notice == "No track with track_id 'NO-SUCH-TRACK' in the catalog."
    assert console_errors(browser, allowed=["the server responded with a status of 404"]) == []


def test_the_page_reads_at_360_pixels_without_sideways_scrolling(browser, server):
    browser.set_window_size(360, 800)
    try:
        open_page(browser, server, "/")
        wait_for(browser, lambda d: by_id(d, "own-prediction").text, "the page's first answers")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= browser.execute_script("return window.innerWidth")
    finally:
        browser.set_window_size(1000, 1400)


def test_screenshot(browser, server, tmp_path):
    open_page(browser, server, "/?track_id=TWINHIGH00000000000001")
    wait_for(browser, lambda d: by_id(d, "song-chart").text and by_id(d, "own-chart").text, "the song")
    path = tmp_path / "page.png"
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("VALENCE_SCREENSHOT"):
        shutil.copy(path, os.environ["VALENCE_SCREENSHOT"])


def test_without_a_model_the_page_says_so_and_asks_nothing(browser, make_app, tmp_path_factory):
    empty = Server(make_app(model_dir=tmp_path_factory.mktemp("no-models")))
    try:
        open_page(browser, empty)
        notice = by_id(browser, "notice")
        assert notice.is_displayed()
        assert notice.text.startswith("No model is loaded, so nothing can be predicted yet")
        assert "python musical_valence_predictor.py" in notice.text
        assert not by_id(browser, "find").is_displayed() and not by_id(browser, "own").is_displayed()
        assert console_errors(browser) == []
        assert foreign_requests(browser, empty.origin) == []
    finally:
        empty.stop()


# ---- issue 24: what the page says ---------------------------------------------------------------------------

def post_json(server, path, body):
    """Return the JSON answer of a POST, as an API client gets it."""
    request = urllib.request.Request(server.origin + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def test_the_model_panel_names_date_rows_and_file_and_the_other_folds_baseline(browser, server):
    open_page(browser, server)
    meta = server.json("/model")["regression"]
    wait_for(browser, lambda d: by_id(d, "model-summary").text, "the model panel")
    assert by_id(browser, "model-summary").text == (
        f"Trained on {meta['created_at'][:10]} with {meta['data']['rows']:,} rows of {meta['data']['path']}. "
        "Baselines: for valence the mean of the other folds' valence, for the mood their most frequent mood "
        "(each song is tested by the fold model that never saw it).")


def test_not_found_shows_the_apis_suggestions_and_each_opens_its_song(browser, server):
    from selenium.webdriver.common.by import By

    open_page(browser, server, "/?artist_name=Twin%20Artist&track_name=Same%20Sogn")
    wait_for(browser, lambda d: by_id(d, "find-error").is_displayed() and "Did you mean" in by_id(d, "find-error").text,
             "the suggestions")
    answer = urllib.request.Request(server.origin + "/predict?artist_name=Twin%20Artist&track_name=Same%20Sogn")
    try:
        urllib.request.urlopen(answer, timeout=30)
    except urllib.error.HTTPError as error:
        suggestions = json.load(error)["suggestions"]
    buttons = by_id(browser, "find-error").find_elements(By.CSS_SELECTOR, "button.suggestion")
    assert [b.get_attribute("data-track-id") for b in buttons] == [s["track_id"] for s in suggestions]
    buttons[0].click()
    wait_for(browser, lambda d: by_id(d, "song").is_displayed() and by_id(d, "song-prediction").text, "the song")
    assert browser.current_url.endswith(f"track_id={suggestions[0]['track_id']}")
    assert console_errors(browser, allowed=["the server responded with a status of 404"]) == []


def test_trying_a_song_keeps_a_value_beyond_its_sliders_range_until_that_slider_moves(browser, server):
    from selenium.webdriver.common.keys import Keys

    open_page(browser, server, "/?track_id=TWINHIGH00000000000001")
    wait_for(browser, lambda d: by_id(d, "song-chart").text and by_id(d, "own-prediction").text, "the song")
    features = dict(browser.execute_script("return currentSong.features"), duration_ms=2_100_000.0)  # 35 minutes
    browser.execute_script("currentSong.features.duration_ms = 2100000;")
    by_id(browser, "use-song").click()
    exact = post_json(server, "/explain", features)
    wait_for(browser, lambda d: by_id(d, "own-prediction").text == f"{exact['prediction']:.3f}", "the song's prediction")
    assert by_id(browser, "o-duration_ms").text == "35:00"
    assert dict(chart(browser, "own-chart")) == exact["contributions"]
    by_id(browser, "f-duration_ms").send_keys(Keys.HOME)  # moved by the person: the slider's value from now on
    wait_for(browser, lambda d: by_id(d, "o-duration_ms").text != "35:00", "the slider's own value")
    assert console_errors(browser) == []


def test_a_song_without_measured_valence_says_so(browser, make_app, trained, catalog_csv, tmp_path_factory):
    import pandas as pd

    from valence.catalog.build import build_catalog

    folder = tmp_path_factory.mktemp("unlabelled")
    pd.read_csv(catalog_csv, keep_default_na=False).drop(columns="valence").to_csv(folder / "mine.csv", index=False)
    build_catalog(folder / "mine.csv", trained[0], folder / "mine.sqlite", log=lambda *_: None)
    mine = Server(make_app(catalog=folder / "mine.sqlite"))
    try:
        open_page(browser, mine, "/?track_id=DUPLICATE0000000000001")
        wait_for(browser, lambda d: by_id(d, "song").is_displayed() and by_id(d, "song-prediction").text, "the song")
        assert by_id(browser, "song-actual").text == "no measured valence"
        assert not by_id(browser, "marker-actual").is_displayed()
        assert not by_id(browser, "song-honest").is_displayed()  # no valence: the served model, as a new song
        assert console_errors(browser) == []
    finally:
        mine.stop()


# ---- issue 25: score a file ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def songs_with_bad_rows(tmp_path_factory):
    """Return a 60-song CSV in the Kaggle schema: two bad rows (lines 4 and 11), a genre and an artist the model
    never saw, and a track name with a comma and quotes."""
    import pandas as pd

    from valence.data.synthetic import generate_dataset

    frame = generate_dataset(60, seed=21).astype({"danceability": object, "tempo": object})
    frame.loc[2, "danceability"] = "very"
    frame.loc[9, "tempo"] = -3
    frame.loc[5, "genre"] = "Polka"
    frame.loc[6, "artist_name"] = "Nobody Has Heard Of Us"
    frame.loc[7, "track_name"] = 'Hello, "World"'
    path = tmp_path_factory.mktemp("score-a-file") / "my songs.csv"
    pd.DataFrame(frame).to_csv(path, index=False)
    return path


def test_scoring_a_file_shows_its_summary_and_chart_and_downloads_what_predict_writes(
        browser, server, trained, songs_with_bad_rows, tmp_path):
    import subprocess
    import sys

    import numpy as np
    import pandas as pd
    from selenium.webdriver.common.by import By

    expected_path = tmp_path / "expected.csv"
    subprocess.run([sys.executable, "musical_valence_predictor.py", "--predict", str(songs_with_bad_rows),
                    "--output", str(expected_path), "--model-dir", str(trained[0]), "--quiet"],
                   cwd=Path(__file__).resolve().parents[1], check=True, capture_output=True)
    expected = pd.read_csv(expected_path, keep_default_na=False)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})

    open_page(browser, server)
    assert "At most 100,000 songs in 64 MiB" in by_id(browser, "score-limit").text  # shown before any upload
    by_id(browser, "score-file").send_keys(str(songs_with_bad_rows))
    wait_for(browser, lambda d: by_id(d, "score-result").is_displayed(), "the file's summary")
    assert by_id(browser, "score-progress-row").is_displayed() is False
    assert by_id(browser, "score-file-name").text == "my songs.csv"
    assert by_id(browser, "score-scored").text == "58" and by_id(browser, "score-skipped").text == "2"
    reasons = by_id(browser, "score-reasons").find_elements(By.CSS_SELECTOR, "li.reason")
    assert sorted((r.get_attribute("data-reason"), r.get_attribute("data-count")) for r in reasons) == [
        ("row with a non-numeric feature", "1"), ("row with an out-of-range value", "1")]
    lines = by_id(browser, "score-reasons").find_elements(By.CSS_SELECTOR, "li.line")
    assert [line.get_attribute("data-line") for line in lines] == ["4", "11"]
    assert "danceability='very'" in lines[0].text and "tempo" in lines[1].text
    unseen_artists = int(by_id(browser, "score-unseen-artists").text)
    assert unseen_artists >= 1 and by_id(browser, "score-unseen-genres").text == "1"

    bins = by_id(browser, "score-chart").find_elements(By.CSS_SELECTOR, "rect.bin")
    shown = [int(b.get_attribute("data-count")) for b in bins]
    scored = pd.to_numeric(expected["predicted_valence"], errors="coerce").dropna().to_numpy()
    assert len(bins) == 10 and sum(shown) == 58
    assert shown == np.bincount(np.minimum(9, np.floor(scored * 10).astype(int)), minlength=10).tolist()

    header = [cell.text for cell in by_id(browser, "score-preview").find_elements(By.CSS_SELECTOR, "thead th")]
    assert header == list(expected.columns)  # whatever columns --predict writes
    by_id(browser, "score-download").click()
    target = downloads / "my songs.predictions.csv"
    wait_for(browser, lambda d: target.is_file(), "the download")
    downloaded = pd.read_csv(target, keep_default_na=False)
    pd.testing.assert_frame_equal(downloaded, expected)  # the values --predict writes for the same file
    assert downloaded.loc[7, "track_name"] == 'Hello, "World"' and downloaded.loc[2, "predicted_valence"] == ""
    assert console_errors(browser) == []
    assert foreign_requests(browser, server.origin) == []


def test_a_dropped_file_without_a_row_to_score_says_why_and_one_over_the_limit_is_not_sent(browser, server):
    open_page(browser, server)
    browser.execute_script("""
        const transfer = new DataTransfer();
        transfer.items.add(new File(["genre,popularity\\n"], "empty.csv", {type: "text/csv"}));
        document.getElementById("score-drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    """)
    notice = wait_for(browser, lambda d: by_id(d, "score-error").is_displayed() and by_id(d, "score-error").text,
                      "the error")
    assert notice.startswith("empty.csv could not be scored: The CSV body is missing required column(s): "
                             "acousticness, danceability")
    assert "(found: 'genre', 'popularity')" in notice and not by_id(browser, "score-result").is_displayed()
    browser.get_log("performance")
    browser.execute_script("""
        document.getElementById("score").dataset.maxBytes = "10";
        const transfer = new DataTransfer();
        transfer.items.add(new File(["genre,popularity\\nPop,1\\n"], "big.csv", {type: "text/csv"}));
        document.getElementById("score-drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    """)
    wait_for(browser, lambda d: "big.csv is" in by_id(d, "score-error").text, "the size message")
    assert "at most 100,000 songs in 0.0 MiB: split it" in by_id(browser, "score-error").text
    sent = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    assert not any(m["method"] == "Network.requestWillBeSent" and "/invocations" in m["params"]["request"]["url"]
                   for m in sent)
    assert console_errors(browser, allowed=["the server responded with a status of 400"]) == []
