"""What the server tells operators: hints that work as written, readiness that follows the catalog, no secrets."""
import logging
import shlex
import shutil
import time
import uuid
from pathlib import Path

import pytest

from test_api import SONG
from test_serving import build, copy_models
from valence import config

LOOKUP = "/predict?artist_name=Duo Act&track_name=Shared Song"
HINT = "build it with: python musical_valence_predictor.py --build-catalog "


def metric(client, name, **labels):
    """Return a sample's value in the app's /metrics (0 when absent)."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture
def project_models(trained):
    """A model folder inside the project folder (where hints are run from), removed afterwards."""
    folder = config.PROJ_ROOT / f".test-models-{uuid.uuid4().hex[:8]}"
    copy_models(trained[0], folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_build_hint_run_from_the_project_folder_writes_where_the_server_reads(make_app, project_models):
    target = project_models / "catalog.sqlite"
    client = make_app(model_dir=project_models, catalog=target).test_client()
    message = client.get(LOOKUP).json["message"]
    command = shlex.split(message[message.index(HINT):].removeprefix("build it with: ").rstrip(")"))
    assert command[:3] == ["python", "musical_valence_predictor.py", "--build-catalog"]
    model_dir = config.PROJ_ROOT / command[command.index("--model-dir") + 1]
    assert model_dir == project_models and "--catalog" not in command  # its default, <model-dir>/catalog.sqlite
    for text in (client.get("/health").json["catalog"]["error"], client.get("/health/ready").json["message"]):
        assert HINT + f"--model-dir {project_models.name}" in text and str(config.PROJ_ROOT) not in text


def test_a_catalog_elsewhere_in_the_project_is_named_with_catalog(make_app, project_models):
    target = project_models / "sub" / "served.sqlite"
    client = make_app(model_dir=project_models, catalog=target).test_client()
    message = client.get(LOOKUP).json["message"]
    assert message.endswith(HINT + f"--model-dir {project_models.name} --catalog {project_models.name}/sub/served.sqlite)")


def test_a_catalog_damaged_inside_is_not_ready_degraded_and_counted(make_app, served_catalog, tmp_path):
    path = tmp_path / "catalog.sqlite"
    data = bytearray(served_catalog.read_bytes())
    page = 4096
    data[page * 3:page * 40] = b"\xa5" * (page * 37)  # pages overwritten; the header (page 1) intact
    path.write_bytes(bytes(data))
    client = make_app(catalog=path).test_client()
    health = client.get("/health").json
    assert health["status"] == "degraded" and "damaged" in health["catalog"]["error"]
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and any("damaged" in reason for reason in ready.json["reasons"])
    assert client.get(LOOKUP).status_code == 503 and client.get("/search?q=duo").status_code == 503
    assert metric(client, "valence_load_failures_total", what="catalog") == 1
    assert client.post("/predict", json=SONG).status_code == 200


def test_a_served_file_that_fails_a_query_makes_the_process_not_ready_until_replaced(make_app, served_catalog,
                                                                                      tmp_path):
    path = tmp_path / "catalog.sqlite"
    shutil.copyfile(served_catalog, path)
    app = make_app(catalog=path, VALENCE_RELOAD_SECONDS=0)
    client = app.test_client()
    assert client.get("/health/ready").status_code == 200
    size = path.stat().st_size
    with open(path, "r+b") as file:  # damaged in place while served: pages overwritten, the header intact
        file.seek(4096)
        file.write(b"\xa5" * (size - 4096))
    # The served connection has every page cached by the check at open; its next read fails as a damaged page's.
    app.extensions["valence"].pair.store.connection.close()
    assert client.get(LOOKUP).status_code == 503
    health = client.get("/health").json
    assert health["status"] == "degraded" and "cannot be read" in health["catalog"]["error"]
    assert client.get("/health/ready").status_code == 503
    # Two failures: the damaged file at the target refused at reopen, then the served store that stopped answering.
    assert metric(client, "valence_load_failures_total", what="catalog") == 2
    shutil.copyfile(served_catalog, tmp_path / "new.sqlite")
    (tmp_path / "new.sqlite").replace(path)  # a rebuild: a new file renamed over it
    assert client.get("/health/ready").status_code == 200 and client.get(LOOKUP).status_code == 200


@pytest.mark.slow
def test_postgres_down_is_not_ready_counted_and_secret_free_then_ready_again(make_app, trained, catalog_csv, tmp_path,
                                                                               caplog):
    from postgres_server import start_server

    server = start_server()
    try:
        url = server.create_database("outage")
        build(catalog_csv, trained[0], url)
        secret_url = url + ("&" if "?" in url else "?") + "password=hunter2secret"
        app = make_app(catalog=secret_url, VALENCE_RELOAD_SECONDS=0)
        client = app.test_client()
        assert client.get("/health/ready").status_code == 200 and client.get(LOOKUP).status_code == 200
        server.stop()
        caplog.set_level(logging.WARNING, logger="valence.catalog")
        deadline = time.monotonic() + 15
        while client.get("/health/ready").status_code != 503:
            assert time.monotonic() < deadline, "still ready with the database down"
            time.sleep(0.2)
        health, lookup, search = client.get("/health"), client.get(LOOKUP), client.get("/search?q=duo")
        assert health.json["status"] == "degraded" and lookup.status_code == 503 and search.status_code == 503
        assert metric(client, "valence_load_failures_total", what="catalog") >= 1
        hostish = url.split("@")[-1].split("/")[0] if "@" in url else "localhost"
        for response in (health, lookup, search, client.get("/health/ready")):
            text = response.get_data(as_text=True)
            assert "hunter2secret" not in text and "postgresql://" not in text and hostish not in text
            assert "cannot be reached" in text
        logged = " ".join(record.getMessage() for record in caplog.records)
        assert "cannot be reached (" in logged and "hunter2secret" not in logged
        server.start()
        deadline = time.monotonic() + 15
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "not ready again after the database came back"
            time.sleep(0.2)
        assert client.get("/health").json["status"] == "ok" and client.get(LOOKUP).status_code == 200
        app.extensions["valence"].close()
    finally:
        server.remove()
