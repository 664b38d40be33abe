"""The downloader against a real HTTP server on 127.0.0.1: success, truncation, corruption, no server."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from mmrepro.data.download import DataError, Source, download, locate, verify

FILES = {"recordings/0_a_0.wav": b"RIFF fake wave " * 50, "labels.txt": b"0 1 2 3\n"}
MANIFEST = {rel: hashlib.sha256(body).hexdigest() for rel, body in FILES.items()}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the folder; under /liar/ it announces 100 more bytes than it sends (a cut connection)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.startswith("/liar/"):
            body = (Path(self.directory) / self.path[len("/liar/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 100))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A served folder with the files one by one under /files/ and as one zip at /repo.zip."""
    root = tmp_path / "www"
    for rel, body in FILES.items():
        (root / "files" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "files" / rel).write_bytes(body)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for rel, body in FILES.items():
            archive.writestr(f"repo-abc123/{rel}", body)
    (root / "repo.zip").write_bytes(buffer.getvalue())
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def no_data_dir(monkeypatch, tmp_path):
    """No MMREPRO_DATA_DIR, and a fresh cache."""
    monkeypatch.delenv("MMREPRO_DATA_DIR", raising=False)
    monkeypatch.setenv("MMREPRO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "data"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _files_source(*bases: str) -> Source:
    return Source("toy", MANIFEST, file_base_urls=bases)


def _assert_files(folder: Path) -> None:
    for rel, body in FILES.items():
        assert (folder / rel).read_bytes() == body


def test_per_file_download_into_the_cache(server, no_data_dir):
    _, url = server
    folder = locate(_files_source(f"{url}/files/"))
    assert folder == no_data_dir / "toy"
    _assert_files(folder)


def test_archive_download_matches_members_by_suffix(server, tmp_path):
    _, url = server
    dest = download(Source("toy", MANIFEST, archive_urls=(f"{url}/repo.zip",)), tmp_path / "out" / "toy")
    _assert_files(dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["toy"], "no staging folder may be left behind"


def test_second_mirror_is_used_when_the_first_fails(server, no_data_dir):
    _, url = server
    folder = locate(_files_source(f"http://127.0.0.1:{_closed_port()}/", f"{url}/files/"))
    _assert_files(folder)


def test_cache_is_reused_without_network(server, no_data_dir):
    _, url = server
    locate(_files_source(f"{url}/files/"))
    assert locate(_files_source(f"http://127.0.0.1:{_closed_port()}/")) == no_data_dir / "toy"


def test_truncated_body_is_an_error_naming_the_file(server, no_data_dir):
    _, url = server
    with pytest.raises(DataError) as err:
        locate(_files_source(f"{url}/liar/files/"))
    message = str(err.value)
    assert "truncated" in message and "recordings/0_a_0.wav" in message and "MMREPRO_DATA_DIR" in message
    assert not (no_data_dir / "toy").exists(), "nothing may be written from a failed download"


def test_checksum_mismatch_is_an_error_naming_the_file(server, no_data_dir):
    root, url = server
    (root / "files" / "labels.txt").write_bytes(b"0 1 2\n")  # cut after the manifest was computed
    with pytest.raises(DataError) as err:
        locate(_files_source(f"{url}/files/"))
    message = str(err.value)
    assert "labels.txt" in message and "checksum mismatch" in message and "MMREPRO_DATA_DIR" in message
    assert not (no_data_dir / "toy").exists()


def test_archive_without_a_file_is_an_error_naming_it(server, no_data_dir):
    _, url = server
    source = Source("toy", {**MANIFEST, "extra.txt": "0" * 64}, archive_urls=(f"{url}/repo.zip",))
    with pytest.raises(DataError, match="extra.txt"):
        locate(source)


def test_unreachable_server_is_an_error_naming_the_url_and_the_fix(no_data_dir):
    url = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(DataError) as err:
        locate(_files_source(url))
    message = str(err.value)
    assert url + "recordings/0_a_0.wav" in message and "MMREPRO_DATA_DIR" in message


def _data_dir_with_copy(tmp_path: Path, monkeypatch) -> Path:
    data = tmp_path / "shared"
    for rel, body in FILES.items():
        (data / "toy" / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / "toy" / rel).write_bytes(body)
    monkeypatch.setenv("MMREPRO_DATA_DIR", str(data))
    monkeypatch.setenv("MMREPRO_CACHE_DIR", str(tmp_path / "cache"))
    return data / "toy"


def test_data_dir_is_read_first(tmp_path, monkeypatch):
    folder = _data_dir_with_copy(tmp_path, monkeypatch)
    assert locate(_files_source(f"http://127.0.0.1:{_closed_port()}/")) == folder
    assert not (tmp_path / "cache").exists(), "a verified MMREPRO_DATA_DIR copy needs no download"


def test_corrupt_file_in_data_dir_is_an_error_naming_it(tmp_path, monkeypatch):
    folder = _data_dir_with_copy(tmp_path, monkeypatch)
    (folder / "labels.txt").write_bytes(b"tampered")
    with pytest.raises(DataError) as err:
        locate(_files_source(f"http://127.0.0.1:{_closed_port()}/"))
    message = str(err.value)
    assert str(folder / "labels.txt") in message and "Delete it" in message


def test_missing_file_in_data_dir_is_an_error_naming_it(tmp_path, monkeypatch):
    folder = _data_dir_with_copy(tmp_path, monkeypatch)
    (folder / "labels.txt").unlink()
    with pytest.raises(DataError) as err:
        verify(folder, _files_source())
    assert str(folder / "labels.txt") in str(err.value) and "MMREPRO_DATA_DIR" in str(err.value)


def test_data_dir_that_is_not_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MMREPRO_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere.*is not a directory"):
        locate(_files_source())


def test_download_disabled_says_where_it_looked(no_data_dir):
    with pytest.raises(DataError) as err:
        locate(_files_source(), allow_download=False)
    assert str(no_data_dir / "toy") in str(err.value) and "MMREPRO_DATA_DIR" in str(err.value)


def _locate_three_times(base: str, cache: str, queue) -> None:
    import os

    os.environ["MMREPRO_CACHE_DIR"] = cache
    try:
        for _ in range(3):
            folder = locate(_files_source(base))
            _assert_files(folder)
        queue.put("ok")
    except Exception as error:  # reported to the parent, which fails the test with it
        queue.put(f"{type(error).__name__}: {error}")


def test_concurrent_downloads_into_one_cache_all_succeed(server, no_data_dir):
    import multiprocessing

    _, url = server
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_locate_three_times, args=(f"{url}/files/", str(no_data_dir.parent), queue))
             for _ in range(6)]
    for p in procs:
        p.start()
    outcomes = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert outcomes == ["ok"] * 6
    assert sorted(p.name for p in no_data_dir.iterdir()) == [".toy.lock", "toy"], "no staging folder left behind"
