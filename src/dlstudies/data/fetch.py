"""Datasets downloaded on explicit request only: `dlstudies data fetch mnist [--to DIR] [--mirror URL]`.

Nothing in dlstudies downloads at run time. `fetch` gets each file of a dataset by its published
name from a mirror (a base URL), checks it against its published MD5 checksum, and only when
every file is verified renames them, each from a temporary file beside it, into the data folder:
a failed, truncated or corrupt download leaves nothing behind, and a finished one is not fetched
again. The data folder is `$DLSTUDIES_DATA/<name>` (default `~/.cache/dlstudies/<name>`), where
`--data mnist` then finds the files without `--data-dir`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dlstudies.errors import UsageError

CHUNK = 1 << 20
TIMEOUT_S = 60


@dataclass(frozen=True)
class Remote:
    """A dataset's files as published: name -> MD5, and the mirrors (base URLs) tried in order."""

    md5: dict[str, str]
    mirrors: tuple[str, ...]


# The checksums are the ones published with the files (and listed by torchvision's datasets/mnist.py).
REMOTES = {
    "mnist": Remote({
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }, ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")),
}


def data_home() -> Path:
    """Where fetched datasets live: $DLSTUDIES_DATA, default ~/.cache/dlstudies."""
    return Path(os.environ.get("DLSTUDIES_DATA") or "~/.cache/dlstudies").expanduser()


def default_folder(name: str) -> Path:
    return data_home() / name


def remote(name: str) -> Remote:
    if name not in REMOTES:
        raise UsageError(f"no download is known for dataset '{name}'; valid: {', '.join(sorted(REMOTES))}")
    return REMOTES[name]


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_files(name: str, folder: Path) -> list[str]:
    """The dataset's files that `folder` lacks or holds with the wrong checksum."""
    return [f for f, md5 in remote(name).md5.items() if not ((folder / f).is_file() and md5_of(folder / f) == md5)]


def fetch(name: str, to: str | Path | None = None, mirror: str | None = None) -> Path:
    """Download dataset `name` into `to` (default: its folder under data_home()); returns the folder.
    Every failure is a UsageError, and leaves nothing of this download behind."""
    spec, folder = remote(name), Path(to).expanduser() if to else default_folder(name)
    todo = missing_files(name, folder) if folder.is_dir() else list(spec.md5)
    if not todo:
        _say(f"{name}: all {len(spec.md5)} files are in {folder} already, verified")
        return folder
    created = _make_folder(folder)
    temps: dict[str, Path] = {}
    try:
        for f in todo:
            temps[f] = _download(f, spec.md5[f], [mirror] if mirror else list(spec.mirrors), folder)
        for f, tmp in temps.items():
            os.replace(tmp, folder / f)
    except OSError as err:  # the data folder, not the network: full, read-only, ...
        _clean(temps.values(), created)
        raise UsageError(f"cannot write to the data folder '{folder}': {err.strerror or err}; nothing was written") from None
    except BaseException:
        _clean(temps.values(), created)
        raise
    _say(f"{name}: {len(todo)} file(s) downloaded and verified into {folder}")
    return folder


def _make_folder(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return those created (removed again on failure)."""
    created = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the data folder '{folder}': {err.strerror or err}") from None
    return created


def _clean(temps, created: list[Path]) -> None:
    for tmp in temps:
        Path(tmp).unlink(missing_ok=True)
    for p in created:  # innermost first: each is empty once its child is gone
        try:
            p.rmdir()
        except OSError:
            break


def _download(file: str, md5: str, mirrors: list[str], folder: Path) -> Path:
    """`file` from the first mirror that serves it intact, as a verified temporary file in `folder`."""
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + file
        fd, name = tempfile.mkstemp(dir=folder, prefix=f".{file}.", suffix=".part")
        os.close(fd)
        tmp = Path(name)
        try:
            got = _get(url, tmp)
        except (OSError, http.client.HTTPException, ValueError) as err:
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: {_reason(err)}")
            continue
        if got == md5:  # no line per file: a failure later must stay the only line on stderr
            return tmp
        tmp.unlink(missing_ok=True)
        errors.append(f"{url}: corrupt or truncated (md5 {got}, published {md5})")
    raise UsageError(f"download of {file} failed: {'; '.join(errors)}; nothing was written")


def _get(url: str, tmp: Path) -> str:
    """Stream `url` into `tmp`; the MD5 of what arrived. A body shorter than its Content-Length raises."""
    digest = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
        for block in iter(lambda: response.read(CHUNK), b""):
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _reason(err: Exception) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    if isinstance(err, http.client.IncompleteRead):
        return f"truncated: the connection closed after {len(err.partial)} bytes"
    return str(err) or type(err).__name__


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
