"""Find, download and verify the raw files behind AV-Digits and UCI Multiple Features.

Search order for a dataset folder (``fsdd/``, ``mnist/`` or ``mfeat/``):

1. ``$MMREPRO_DATA_DIR/<name>`` when that variable is set;
2. the user cache, ``$MMREPRO_CACHE_DIR`` or ``~/.cache/mmrepro``, under ``data/<name>``;
3. a download from the public source into the cache.

Every file is checked against the SHA-256 manifest shipped in
``mmrepro/data/checksums``; a truncated or altered file is an error that names
the file, never something silently replaced.  Processes downloading into one
cache at once take turns under a file lock: one downloads, the others find its copy.

Preprocessed tensors (``cached_tensors``) are cached with a SHA-256 of their
contents; a corrupt cache file is rebuilt after a warning, and tensors holding
NaN or inf are refused rather than cached.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..validate import all_finite

FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"


class DataError(RuntimeError):
    """A data file is missing, unreachable, truncated or corrupt."""


@dataclass(frozen=True)
class Source:
    """A dataset folder: its files with their SHA-256, and where to download them.

    ``archive_urls`` names one zip holding every file (matched by path suffix);
    otherwise each file is fetched as ``<base_url><file name>`` from ``file_base_urls``.
    """

    name: str
    manifest: dict[str, str]
    archive_urls: tuple[str, ...] = ()
    file_base_urls: tuple[str, ...] = ()
    licence: str = ""


def manifest(filename: str) -> dict[str, str]:
    """The ``{relative path: sha256}`` manifest shipped in ``mmrepro/data/checksums``."""
    text = resources.files("mmrepro.data").joinpath("checksums", filename).read_text()
    pairs = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
    return {path.strip(): digest for digest, path in pairs}


def fsdd_source() -> Source:
    """Free Spoken Digit Dataset v1.0.10 (CC BY-SA 4.0), pinned to one commit."""
    return Source(
        "fsdd",
        manifest("fsdd.sha256"),
        archive_urls=(f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{FSDD_COMMIT}.zip",),
        licence="CC BY-SA 4.0",
    )


def mnist_source() -> Source:
    """The MNIST test set (CC BY-SA 3.0); mirrors tried in order."""
    return Source(
        "mnist",
        manifest("mnist.sha256"),
        file_base_urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
        licence="CC BY-SA 3.0",
    )


def cache_dir() -> Path:
    """The user cache for downloads and preprocessed tensors."""
    return Path(os.environ.get("MMREPRO_CACHE_DIR") or Path.home() / ".cache" / "mmrepro")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(folder: Path, source: Source) -> None:
    """Raise ``DataError`` naming the first missing or corrupt file of ``source`` in ``folder``."""
    for rel, expected in source.manifest.items():
        path = folder / rel
        if not path.is_file():
            raise DataError(f"{source.name}: missing file {path}. Delete {folder} and let mmrepro download it again, "
                            f"or point MMREPRO_DATA_DIR at a complete copy.")
        got = sha256(path)
        if got != expected:
            raise DataError(f"{source.name}: checksum mismatch for {path} (expected sha256 {expected}, got {got}); "
                            f"the file is truncated or altered. Delete it and re-run to download it again.")


def _fetch(url: str, timeout: float) -> bytes:
    """Download one URL fully into memory, rejecting a body shorter than its Content-Length."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        expected = response.headers.get("Content-Length")
        try:
            body = response.read()
        except http.client.IncompleteRead as exc:  # the connection closed early: checked below
            body = exc.partial
    if expected is not None and len(body) != int(expected):
        raise DataError(f"truncated download from {url}: got {len(body)} of {expected} bytes")
    return body


def _first_that_works(urls: tuple[str, ...], timeout: float) -> bytes:
    errors = []
    for url in urls:
        try:
            return _fetch(url, timeout)
        except (urllib.error.URLError, OSError, DataError) as exc:
            errors.append(f"{url}: {exc}")
    raise DataError("every download source failed:\n  " + "\n  ".join(errors))


def _write_verified(folder: Path, rel: str, body: bytes, expected: str, origin: str) -> None:
    got = hashlib.sha256(body).hexdigest()
    if got != expected:
        raise DataError(f"checksum mismatch for {rel} from {origin} (expected sha256 {expected}, got {got}); "
                        f"nothing was written. The source may have changed: report it, or place a verified copy "
                        f"under MMREPRO_DATA_DIR.")
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def download(source: Source, dest: Path, timeout: float = 60.0) -> Path:
    """Download every file of ``source`` into ``dest`` (atomically: all verified, or nothing)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=dest.parent))
    try:
        if source.archive_urls:
            body = _first_that_works(source.archive_urls, timeout)
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                members = {name: name for name in archive.namelist()}
                for rel, expected in source.manifest.items():
                    match = next((m for m in members if m.endswith("/" + rel)), None)
                    if match is None:
                        raise DataError(f"{source.name}: the downloaded archive has no file ending in {rel}")
                    _write_verified(staging, rel, archive.read(match), expected, source.archive_urls[0])
        else:
            for rel, expected in source.manifest.items():
                body = _first_that_works(tuple(base + rel for base in source.file_base_urls), timeout)
                _write_verified(staging, rel, body, expected, source.file_base_urls[0])
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (held until the block ends, released if one dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _first_present(candidates: list[Path], source: Source) -> Path | None:
    for folder in candidates:
        if folder.exists() and any(folder.iterdir()):
            verify(folder, source)
            return folder
    return None


def locate(source: Source, allow_download: bool = True) -> Path:
    """The verified folder holding ``source``'s files, downloading it if needed."""
    env_root = os.environ.get("MMREPRO_DATA_DIR")
    candidates = []
    if env_root:
        root = Path(env_root)
        if not root.is_dir():
            raise DataError(f"MMREPRO_DATA_DIR={env_root} is not a directory; unset it or point it at a folder "
                            f"holding {source.name}/")
        candidates.append(root / source.name)
    cached = cache_dir() / "data" / source.name
    candidates.append(cached)
    found = _first_present(candidates, source)
    if found is not None:
        return found
    if not allow_download:
        raise DataError(f"{source.name} not found in {[str(c) for c in candidates]} and downloading is disabled. "
                        f"Set MMREPRO_DATA_DIR to a folder holding {source.name}/ (see shared/data/README.md).")
    try:
        with _locked(cached.parent / f".{source.name}.lock"):  # one process downloads; the others then find it
            return _first_present(candidates, source) or download(source, cached)
    except DataError as exc:
        raise DataError(f"{source.name} not found in {[str(c) for c in candidates]} and the download failed: {exc}\n"
                        f"With no network, copy the files into {cached} or set MMREPRO_DATA_DIR.") from exc


# ----------------------------------------------------------------------------- preprocessed tensors

def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _read_tensor_cache(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a cache file, or ``ValueError`` saying why the file cannot be trusted."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise ValueError(f"unreadable ({type(error).__name__}: {str(error)[:120]})") from error
    if not isinstance(saved, dict) or set(saved) != {"tensors", "sha256"}:
        raise ValueError("not a checksummed tensor cache")
    if tensor_checksum(saved["tensors"]) != saved["sha256"]:
        raise ValueError("its checksum does not match its tensors (bit rot or an interrupted copy)")
    return saved["tensors"]


def cached_tensors(path: Path, build: Callable[[], dict[str, torch.Tensor]], what: str) -> dict[str, torch.Tensor]:
    """``build()``'s tensors, cached at ``path`` with a checksum; a corrupt cache is rebuilt after a warning.

    Tensors holding NaN or inf are refused, never cached: ``what`` names the settings to check.
    """
    if path.is_file():
        try:
            return _read_tensor_cache(path)
        except ValueError as reason:
            warnings.warn(f"preprocessing cache {path} is corrupt ({reason}); rebuilding it", RuntimeWarning,
                          stacklevel=2)
    tensors = build()
    bad = [k for k, t in tensors.items() if not all_finite(t)]
    if bad:
        raise DataError(f"preprocessing {what} gave NaN or inf in {bad}; check its settings (nothing was cached)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"tensors": tensors, "sha256": tensor_checksum(tensors)}, tmp)
    os.replace(tmp, path)
    return tensors
