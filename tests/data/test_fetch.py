"""`dlstudies data fetch mnist` against a loopback http.server: generated IDX files with their
checksums injected, and the server made to serve a corrupt, a truncated and a missing file.
Nothing here reaches the internet: the published mirrors are replaced by the loopback one."""

import gzip
import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest

from dlstudies.cli import main
from dlstudies.data import fetch as fetch_module
from dlstudies.data import load_data
from dlstudies.data.idx import mnist

FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def _ubyte_idx(a: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x00 0x00 0x08 ndim, big-endian uint32 dimensions, values."""
    return bytes([0, 0, 0x08, a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()


def _generated(folder):
    """The four files of a tiny 3-class MNIST in `folder`: {name: md5}."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (60, 4, 4), dtype=np.uint8), (np.arange(60) % 3).astype(np.uint8),
              rng.integers(0, 256, (12, 4, 4), dtype=np.uint8), (np.arange(12) % 3).astype(np.uint8)]
    md5 = {}
    for name, a in zip(FILES, arrays):
        data = gzip.compress(_ubyte_idx(a), mtime=0)
        (folder / name).write_bytes(data)
        md5[name] = hashlib.md5(data).hexdigest()
    return md5


class _Handler(http.server.SimpleHTTPRequestHandler):
    short: set = set()  # names served with a Content-Length larger than the body (connection drops)

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        if name in self.short:
            body = (self.server.root / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(base URL, served folder, request log); REMOTES['mnist'] checks the generated files' md5."""
    root = tmp_path / "served"
    root.mkdir()
    md5 = _generated(root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    httpd.root, httpd.requests = root, []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/mnist/"
    monkeypatch.setitem(fetch_module.REMOTES, "mnist", fetch_module.Remote(md5, (url,)))
    monkeypatch.setattr(_Handler, "short", set())
    monkeypatch.setenv("DLSTUDIES_DATA", str(tmp_path / "home"))
    yield url, root, httpd.requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def served_under_mnist(server):
    """The server serves its folder at /mnist/ too: a link named mnist inside it."""
    url, root, requests = server
    (root / "mnist").symlink_to(root)
    return server


def test_fetch_writes_verified_files_and_mnist_loads_without_data_dir(served_under_mnist, tmp_path, capsys):
    url, root, requests = served_under_mnist
    assert main(["data", "fetch", "mnist"]) == 0
    folder = tmp_path / "home" / "mnist"
    assert capsys.readouterr().out.strip() == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)  # no temporary file left
    assert all((folder / f).read_bytes() == (root / f).read_bytes() for f in FILES)
    load_data.cache_clear()
    data = load_data("mnist")
    assert data.n_classes == 3 and len(data.train) + len(data.val) == 60 and len(data.test) == 12
    assert str(folder) in data.source


def test_a_finished_fetch_is_not_fetched_again(served_under_mnist, tmp_path):
    url, _, requests = served_under_mnist
    assert main(["data", "fetch", "mnist", "--to", str(tmp_path / "d")]) == 0
    assert len(requests) == 4
    assert main(["data", "fetch", "mnist", "--to", str(tmp_path / "d")]) == 0
    assert len(requests) == 4
    (tmp_path / "d" / FILES[1]).write_bytes(b"damaged")  # only what fails its checksum is fetched again
    assert main(["data", "fetch", "mnist", "--to", str(tmp_path / "d")]) == 0
    assert [r.rsplit("/", 1)[-1] for r in requests[4:]] == [FILES[1]]
    assert fetch_module.missing_files("mnist", tmp_path / "d") == []


def _fails(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dlstudies: error: download of ")
    for needle in needles:
        assert needle in err
    return err


def test_a_corrupt_file_leaves_nothing_behind(server, tmp_path, capsys):
    url, root, _ = server
    data = bytearray((root / FILES[2]).read_bytes())
    data[100] ^= 0xFF
    (root / FILES[2]).write_bytes(bytes(data))
    _fails(["data", "fetch", "mnist", "--to", str(tmp_path / "new" / "d"), "--mirror", url.replace("/mnist/", "")],
           capsys, FILES[2], "corrupt or truncated", "nothing was written")
    assert not (tmp_path / "new").exists()  # the folders it made are gone too


@pytest.mark.parametrize("how", ["shorter file", "connection drops"])
def test_a_truncated_file_leaves_nothing_behind(server, tmp_path, capsys, how):
    url, root, _ = server
    if how == "shorter file":
        (root / FILES[0]).write_bytes((root / FILES[0]).read_bytes()[:-7])
    else:
        _Handler.short = {FILES[0]}
    keep = tmp_path / "existing"
    keep.mkdir()
    _fails(["data", "fetch", "mnist", "--to", str(keep), "--mirror", url.replace("/mnist/", "/")], capsys, FILES[0])
    assert list(keep.iterdir()) == []  # a folder that was there stays, empty as it was


def test_a_missing_file_is_a_404_and_leaves_nothing_behind(server, tmp_path, capsys):
    url, root, _ = server
    (root / FILES[3]).unlink()
    _fails(["data", "fetch", "mnist", "--to", str(tmp_path / "d"), "--mirror", url.replace("/mnist/", "")],
           capsys, FILES[3], "HTTP 404")
    assert not (tmp_path / "d").exists()


def test_an_unreachable_mirror_and_a_bad_url_are_one_line(server, tmp_path, capsys):
    _fails(["data", "fetch", "mnist", "--to", str(tmp_path / "d"), "--mirror", "http://127.0.0.1:9/"], capsys, "refused")
    _fails(["data", "fetch", "mnist", "--to", str(tmp_path / "d"), "--mirror", "nonsense"], capsys, "unknown url type")
    assert not (tmp_path / "d").exists()


def test_an_unknown_dataset_is_refused_by_the_parser(capsys):
    assert main(["data", "fetch", "cifar10"]) == 2
    assert "invalid choice: 'cifar10'" in capsys.readouterr().err


def test_the_published_checksums_are_the_real_ones():
    # MNIST's published MD5s (as torchvision's datasets/mnist.py lists them): a typo here would make
    # every real download fail its check.
    assert fetch_module.REMOTES["mnist"].md5 == {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
    assert mnist.__module__ == "dlstudies.data.idx"


def test_a_folder_that_cannot_be_written_is_one_line(server, tmp_path, capsys):
    url, _, _ = server
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    assert main(["data", "fetch", "mnist", "--to", str(target / "d"), "--mirror", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data folder" in err and str(target / "d") in err
    assert target.read_text() == "not a folder"
