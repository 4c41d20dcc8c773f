"""Fetch the Kaggle data set with kagglehub and place its CSV where training reads it."""
import shutil
from pathlib import Path

from valence.config import DEFAULT_DATA, KAGGLE_URL, ValenceError
from valence.data.load import load_dataset
from valence.fileio import atomic_path

KAGGLE_HANDLE = "zaheenhamidani/ultimate-spotify-tracks-db"
KAGGLE_CSV = "SpotifyFeatures.csv"  # the one file of the data set


def manual_steps(target):
    """Return how to get the file by hand."""
    return (f"To download it by hand: open {KAGGLE_URL}, download the archive, unzip it and save "
            f"{KAGGLE_CSV} as {target}")


def find_csv(folder):
    """Return the data set's CSV inside a downloaded folder (or the path itself when it is a file)."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    named = sorted(folder.rglob(KAGGLE_CSV))
    found = named or sorted(folder.rglob("*.csv"))
    if len(found) != 1:
        what = "no CSV file" if not found else f"{len(found)} CSV files ({', '.join(p.name for p in found[:5])})"
        raise ValenceError(f"the download in {folder} holds {what}; expected {KAGGLE_CSV}")
    return found[0]


def download_dataset(target=DEFAULT_DATA, force=False, log=print):
    """Download the Kaggle CSV to `target` (atomically); keep an existing file unless `force`. Return the path."""
    target = Path(target)
    if target.exists() and not force:
        log(f"{target} exists; kept it (--download --force replaces it with a fresh download)")
        return target
    try:
        import kagglehub

        folder = kagglehub.dataset_download(KAGGLE_HANDLE)
    except Exception as error:  # noqa: BLE001 -- no network, no credentials, a moved data set: all say the same
        reason = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise ValenceError(
            f"could not download the Kaggle data set {KAGGLE_HANDLE} with kagglehub "
            f"({type(error).__name__}: {reason}). It needs network access, and Kaggle credentials if "
            f"kagglehub asks for them (KAGGLE_USERNAME and KAGGLE_KEY, or ~/.kaggle/kaggle.json). "
            f"{manual_steps(target)}") from None
    source = find_csv(folder)
    _, report = load_dataset(source)  # refuse a file training could not read, before it replaces anything
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)
    log(f"downloaded {KAGGLE_HANDLE}: {report.rows_kept:,} usable rows of {report.rows_read:,}; saved as {target}")
    return target
