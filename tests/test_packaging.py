"""The project installs as a package: a wheel holds the package, its page files and the console script,
and `pip install .` into a fresh venv gives a command line that runs the demo from any folder, keeping data and
models there."""
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Build the project's wheel (offline: the venv's setuptools, no dependencies)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, text=True)
    (found,) = out.glob("*.whl")
    return found


@pytest.mark.slow  # builds and installs the project (seconds), then trains a demo model
def test_the_wheel_holds_every_module_the_page_and_the_console_script(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(path.relative_to(ROOT)) for path in (ROOT / "valence").rglob("*.py")}
    assert modules <= names and "musical_valence_predictor.py" in names
    assert {"valence/api/templates/index.html", "valence/api/static/app.js", "valence/api/static/style.css"} <= names
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "musical-valence-predictor = musical_valence_predictor:command_line" in zipfile.ZipFile(wheel).read(
        entry_points).decode()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: torch==2.13.0" in metadata and 'Requires-Dist: pytest==9.0.3; extra == "test"' in metadata


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """Return a new venv into which `pip install .` installed the project from this checkout.

    Offline: the venv has no pip of its own (this venv's pip installs into it with --python) and reaches the
    pinned dependencies through a .pth file naming this venv's site-packages, which comes after its own.
    """
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "."], cwd=ROOT, check=True, capture_output=True, text=True)
    return venv


@pytest.mark.slow
def test_the_installed_console_script_runs_the_demo_in_the_folder_it_runs_from(fresh_venv, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run([str(fresh_venv / "bin" / "python"), "-c", "import valence, musical_valence_predictor "
                            "as m; print(valence.__file__); print(m.__file__)"],
                           cwd=work, check=True, capture_output=True, text=True).stdout.split()
    assert all(Path(path).is_relative_to(fresh_venv) for path in where)  # the installed copy, not the checkout
    result = subprocess.run([str(fresh_venv / "bin" / "musical-valence-predictor"), "--demo", "--demo-rows", "1500",
                             "--epochs", "1", "--quiet"], cwd=work, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (work / "data" / "demo_features.csv").is_file()
    assert (work / "models" / "demo" / "regression.safetensors").is_file()
    assert not (fresh_venv / "data").exists() and not (fresh_venv / "models").exists()
