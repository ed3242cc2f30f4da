"""Product folders and stack stores on object storage (`s3://`) or HTTP(S), read in place.

Two access paths, each used for what it does best:

* **fsspec** (s3fs / HTTP) lists folders, reads small text files (baselines, metadata.txt)
  and serves Zarr stores (`storage_options`);
* **GDAL virtual file systems** (``/vsis3/``, ``/vsicurl/``) read rasters with HTTP range
  requests, so a windowed read of a tiled GeoTIFF fetches only the tiles it touches
  (Cloud Optimized GeoTIFF, https://www.cogeo.org; GDAL "GDAL Virtual File Systems" docs).

Connection settings come from a `StorageConfig` (config section ``[storage]``, or
`configure`) and fall back to the usual AWS environment variables: ``AWS_ENDPOINT_URL_S3``/
``AWS_ENDPOINT_URL`` for an S3-compatible endpoint (MinIO, Ceph, moto...),
``AWS_NO_SIGN_REQUEST=YES`` for public buckets, ``AWS_REGION``; credentials are never held
here: both s3fs and GDAL take them from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
(+ ``AWS_SESSION_TOKEN``) or ``~/.aws``.

Failures to reach the store are retried with exponential backoff (``backoff_s * 2**k``);
after `StorageConfig.retries` attempts an `InputError` names the URL and the endpoint.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import urlsplit

import fsspec
import rasterio

from mtinsar.config import StorageConfig
from mtinsar.errors import InputError

logger = logging.getLogger(__name__)

REMOTE_SCHEMES = ("s3", "http", "https")
_T = TypeVar("_T")


_active: StorageConfig | None = None


def configure(config: StorageConfig | None) -> None:
    """Make `config` the storage settings of this process (None: environment only)."""
    global _active
    _active = config


@contextmanager
def using(config: StorageConfig | None) -> Iterator[None]:
    """`config` as the storage settings of the enclosed block (None: environment only);
    the settings before it are restored after, also when the block fails."""
    global _active
    before, _active = _active, config
    try:
        yield
    finally:
        _active = before


def current() -> StorageConfig:
    """The configured storage settings, completed from the environment."""
    return (_active or StorageConfig()).resolved()


# =========================================================================== URLs


def is_remote(path: Any) -> bool:
    """True for `s3://`, `http://`, `https://` URLs (and `RemotePath`s), and for members of
    a remote .zip (`zip_member`)."""
    if isinstance(path, RemotePath):
        return True
    text = _outer(str(path))
    return "://" in text and text.split("://", 1)[0].lower() in REMOTE_SCHEMES


def zip_member(archive: Any, member: str) -> str:
    """Name of `member` inside the .zip `archive` (a URL): fsspec's chained form
    ``zip://member::s3://bucket/key.zip``, which `gdal_path` turns into GDAL's
    ``/vsizip//vsis3/bucket/key.zip/member`` (ranged reads of the archive, never downloaded)."""
    return f"zip://{member}::{archive}"


def _outer(text: str) -> str:
    """The archive URL of a `zip_member` name, else `text`."""
    return text.split("::", 1)[1] if text.startswith("zip://") and "::" in text else text


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def gdal_path(path: Any) -> str:
    """GDAL name of `path`: ``/vsis3/bucket/key``, ``/vsicurl/https://...`` or the local path."""
    text = str(path)
    if text.startswith("zip://") and "::" in text:
        member, archive = text[len("zip://") :].split("::", 1)
        return f"/vsizip/{gdal_path(archive)}/{member}"
    kind = scheme(text)
    if kind == "s3":
        return "/vsis3/" + text.split("://", 1)[1]
    if kind in ("http", "https"):
        return "/vsicurl/" + text
    return text


def gdal_options(path: Any, config: StorageConfig | None = None) -> dict[str, str]:
    """GDAL configuration options for reading `path` ({} for a local path)."""
    if not is_remote(path):
        return {}
    path = _outer(str(path))
    cfg = (config or current()).resolved()
    options = {
        # Without this GDAL lists the "directory" of every file it opens: one more request.
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MAX_RETRY": str(cfg.retries - 1),
        "GDAL_HTTP_RETRY_DELAY": f"{cfg.backoff_s:g}",
        "GDAL_HTTP_TIMEOUT": str(max(1, round(cfg.timeout_s))),
        "GDAL_HTTP_CONNECTTIMEOUT": str(max(1, round(cfg.timeout_s))),
    }
    if scheme(str(path)) == "s3":
        if cfg.endpoint_url:
            endpoint = urlsplit(cfg.endpoint_url)
            options["AWS_S3_ENDPOINT"] = endpoint.netloc + endpoint.path.rstrip("/")
            options["AWS_HTTPS"] = "NO" if endpoint.scheme == "http" else "YES"
            # Path-style addressing: a loopback or MinIO endpoint has no bucket sub-domains.
            options["AWS_VIRTUAL_HOSTING"] = "FALSE"
        if cfg.anonymous:
            options["AWS_NO_SIGN_REQUEST"] = "YES"
        if cfg.region:
            options["AWS_REGION"] = cfg.region
    return options


#: Bytes per ranged request when an HDF5/netCDF file is read from object storage / HTTP.
#: HDF5 metadata is scattered in small pieces and a compressed chunk is tens of kB: on
#: simulated GUNW files (128 x 128 chunks) a 5 % bbox moves 26 % of the bytes with 16 KiB
#: blocks, 35 % with 32 KiB, 62 % with 64 KiB and 180 % with 256 KiB (each file is opened at
#: inspection, for bperp, for the geometry cubes and once per computed pixel block it
#: reaches, and re-reads its metadata blocks each time).
HDF5_BLOCK_BYTES = 32 * 1024


@contextmanager
def open_file(path: Any, block_size: int = HDF5_BLOCK_BYTES) -> Iterator[Any]:
    """What h5py/h5netcdf open for `path`: a local path as is, or, for a remote URL, an fsspec
    file object (opened with retries) whose reads are ranged requests of `block_size` bytes,
    cached per open file, so HDF5 fetches the metadata and chunks it needs, not the file."""
    if not is_remote(path):
        yield path
        return
    url = str(path)
    fs = filesystem(url)
    handle = call_with_retries(
        lambda: fs.open(strip_scheme(url), "rb", block_size=block_size, cache_type="blockcache"),
        url,
        "opening",
    )
    with handle:
        yield handle


class _ThreadMute(logging.Filter):
    """Drops the records a thread logs while it is inside `quiet_gdal`."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "depth", 0)


_GDAL_MUTE = _ThreadMute()


@contextmanager
def quiet_gdal() -> Iterator[None]:
    """Mute GDAL's log lines (logger ``rasterio._env``) from this thread while inside: for a
    damaged file they only repeat the message of the InputError raised for it.

    A filter on the calling thread rather than a logger level: setting a level clears the
    cache of every logger, a cost paid for each file a block opens (~10 % of reading a
    LiCSAR frame), and threads reading blocks at once would restore each other's levels.
    """
    logging.getLogger("rasterio._env").addFilter(_GDAL_MUTE)  # added once, then a no-op
    local = _GDAL_MUTE.local
    local.depth = getattr(local, "depth", 0) + 1
    try:
        yield
    finally:
        local.depth -= 1


@contextmanager
def open_raster(path: Any) -> Iterator[Any]:
    """`rasterio.open` of a local path or a remote URL (through /vsis3/ or /vsicurl/).

    The GDAL options are entered with `rasterio.Env` around each open: rasterio keeps them
    per thread, and Dask reads blocks in worker threads.
    """
    if not is_remote(path):
        with rasterio.open(path) as src:
            yield src
        return
    with rasterio.Env(**gdal_options(path)), rasterio.open(gdal_path(path)) as src:
        yield src


def storage_options(url: str, config: StorageConfig | None = None) -> dict[str, Any]:
    """fsspec keyword arguments for `url` (for `fsspec.filesystem`, xarray, zarr)."""
    cfg = (config or current()).resolved()
    kind = scheme(url)
    if kind == "s3":
        client: dict[str, Any] = {}
        if cfg.region:
            client["region_name"] = cfg.region
        return {
            "anon": bool(cfg.anonymous),
            "endpoint_url": cfg.endpoint_url,
            "client_kwargs": client,
            "config_kwargs": {
                "connect_timeout": cfg.timeout_s,
                "read_timeout": cfg.timeout_s,
                # Connection failures are retried (with backoff) by `call_with_retries`.
                "retries": {"max_attempts": 1, "mode": "standard"},
            },
            # Zarr writes through its own (async) instance: a cached listing would go stale.
            "use_listings_cache": False,
        }
    if kind in ("http", "https"):
        return {"client_kwargs": {"timeout": _aiohttp_timeout(cfg.timeout_s)}}
    return {}


def _aiohttp_timeout(seconds: float) -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(total=None, connect=seconds, sock_read=seconds)


def filesystem(url: str, config: StorageConfig | None = None) -> fsspec.AbstractFileSystem:
    """The fsspec file system serving `url`."""
    return fsspec.filesystem(scheme(url), **storage_options(url, config))


def strip_scheme(url: str) -> str:
    return url.split("://", 1)[1] if scheme(url) == "s3" else url


# =========================================================================== retries


def _is_transient(exc: BaseException) -> bool:
    """Connection-level failures worth another attempt (not 'no such key' or 'forbidden')."""
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | InputError):
        return False
    if isinstance(exc, OSError | TimeoutError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "ReadTimeoutError",
            "ClientConnectorError",
            "ClientConnectionError",
            "ServerDisconnectedError",
            "HTTPClientError",
        }
    )


def call_with_retries(
    action: Callable[[], _T], url: str, what: str, config: StorageConfig | None = None
) -> _T:
    """Run `action` (a request about `url`), retrying connection failures with backoff.

    Raises InputError naming `url` (and the endpoint) once `config.retries` attempts failed,
    or at once for a missing object or refused access.
    """
    cfg = (config or current()).resolved()
    for attempt in range(1, cfg.retries + 1):
        try:
            return action()
        except FileNotFoundError as exc:
            raise InputError(f"{url}: no such file or folder ({what}); check the URL") from exc
        except PermissionError as exc:
            raise InputError(
                f"{url}: access denied ({what}); check the credentials (AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY or ~/.aws) or set storage.anonymous for a public bucket"
            ) from exc
        except Exception as exc:
            if not _is_transient(exc):
                raise
            if attempt == cfg.retries:
                endpoint = f" at endpoint {cfg.endpoint_url}" if cfg.endpoint_url else ""
                raise InputError(
                    f"{url}: unreachable{endpoint} after {cfg.retries} attempts ({what}: "
                    f"{type(exc).__name__}: {exc}); check the URL, storage.endpoint_url and "
                    "the network, then try again"
                ) from exc
            wait = cfg.backoff_s * 2 ** (attempt - 1)
            logger.warning(
                "%s: %s failed (%s), retrying in %.1f s (attempt %d of %d)",
                url,
                what,
                type(exc).__name__,
                wait,
                attempt + 1,
                cfg.retries,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


# =========================================================================== RemotePath


class RemotePath:
    """A pathlib-like view of a remote folder tree, listed once, for the product readers.

    Supports what the readers use: ``/``, ``name``, ``parent``, ``parts``, ``suffix``, ``stem``,
    ``with_name``, ``relative_to``, ``exists``, ``is_dir``, ``is_file``, ``iterdir``,
    ``glob``, ``rglob``, ``read_text``, ``read_bytes``, ``resolve``, ``stat().st_size``.
    The whole tree below the root is listed with one recursive request (`fsspec find`) and
    shared by every path derived from it, so discovery costs one listing whatever the number
    of files; pixels are never read through it (`open_raster` reads windows through GDAL).
    """

    def __init__(self, url: str, _tree: _Tree | None = None) -> None:
        url = url.rstrip("/")
        self._url = url
        self._tree = _tree or _Tree(url)

    # -- pure path operations
    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"RemotePath({self._url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)

    def __lt__(self, other: RemotePath) -> bool:
        return self._url < str(other)

    def __truediv__(self, name: str | os.PathLike[str]) -> RemotePath:
        return RemotePath(f"{self._url}/{str(name).strip('/')}", self._tree)

    @property
    def _key(self) -> str:
        return strip_scheme(self._url)

    @property
    def name(self) -> str:
        return PurePosixPath(self._key).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self._key).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self._key).stem

    @property
    def parent(self) -> RemotePath:
        head, _, _ = self._url.rpartition("/")
        return RemotePath(head, self._tree) if "://" in head and head else self

    @property
    def parts(self) -> tuple[str, ...]:
        return PurePosixPath(self._key).parts

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def relative_to(self, other: RemotePath) -> PurePosixPath:
        return PurePosixPath(self._key).relative_to(PurePosixPath(RemotePath(str(other))._key))

    def resolve(self) -> RemotePath:
        return self

    # -- operations answered from the listing
    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def is_file(self) -> bool:
        return self._key in self._tree.files

    def is_dir(self) -> bool:
        return self._key in self._tree.dirs

    def iterdir(self) -> Iterator[RemotePath]:
        if not self.is_dir():
            raise NotADirectoryError(str(self))
        prefix = self._key + "/"
        for key in sorted(self._tree.files.keys() | self._tree.dirs):
            if key.startswith(prefix) and "/" not in key[len(prefix) :]:
                yield self._child(key)

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """Entries below this folder whose relative path matches `pattern` segment by segment."""
        prefix = self._key + "/"
        want = pattern.split("/")
        for key in sorted(self._tree.files.keys() | self._tree.dirs):
            if not key.startswith(prefix):
                continue
            rel = key[len(prefix) :].split("/")
            if len(rel) == len(want) and all(
                fnmatch.fnmatchcase(p, w) for p, w in zip(rel, want, strict=True)
            ):
                yield self._child(key)

    def rglob(self, pattern: str) -> Iterator[RemotePath]:
        """Entries at any depth below this folder whose name matches `pattern`."""
        prefix = self._key + "/"
        for key in sorted(self._tree.files.keys() | self._tree.dirs):
            if key.startswith(prefix) and fnmatch.fnmatchcase(PurePosixPath(key).name, pattern):
                yield self._child(key)

    def stat(self) -> os.stat_result:
        if self._key not in self._tree.files:
            raise FileNotFoundError(str(self))
        size = self._tree.files[self._key]
        if size is None:  # an HTTP index page gives no sizes: ask the server (HEAD)
            fs, path = self._tree.fs, self._fs_path
            size = int(call_with_retries(lambda: fs.size(path), self._url, "size") or 0)
            self._tree.files[self._key] = size
        return os.stat_result((0o100444, 0, 0, 1, 0, 0, size, 0, 0, 0))

    # -- operations that read a (small) object
    def read_bytes(self) -> bytes:
        fs = self._tree.fs
        return call_with_retries(lambda: fs.cat_file(self._fs_path), self._url, "reading")

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors=errors)

    @property
    def _fs_path(self) -> str:
        return self._key if scheme(self._url) == "s3" else self._url

    def _child(self, key: str) -> RemotePath:
        url = f"s3://{key}" if scheme(self._url) == "s3" else key
        return RemotePath(url, self._tree)


class _Tree:
    """The recursive listing of a remote folder, made on first use and then kept."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.fs = filesystem(root)
        self._files: dict[str, int | None] | None = None
        self._dirs: set[str] = set()

    @property
    def files(self) -> dict[str, int | None]:
        """Key -> size in bytes (None: not in the listing, asked for on demand)."""
        if self._files is None:
            self._list()
        assert self._files is not None
        return self._files

    @property
    def dirs(self) -> set[str]:
        self.files  # noqa: B018 - lists on first use
        return self._dirs

    def _list(self) -> None:
        kind = scheme(self.root)
        root = strip_scheme(self.root)
        found = call_with_retries(
            lambda: self.fs.find(root, withdirs=True, detail=True), self.root, "listing"
        )
        files: dict[str, int | None] = {}
        dirs: set[str] = set()
        for name, info in found.items():
            key = name if kind == "s3" else name
            key = key.rstrip("/")
            if info.get("type") == "directory":
                dirs.add(key)
            else:
                size = info.get("size")
                files[key] = None if size is None else int(size)
        # Object stores have no folders: every prefix of a key up to the root is one.
        for key in list(files):
            parent = key.rpartition("/")[0]
            while parent.startswith(root) and parent not in dirs:
                dirs.add(parent)
                parent = parent.rpartition("/")[0]
        if files or dirs:
            dirs.add(root)
            # An HTTP server answers the folder URL itself with its index page, which the
            # listing reports as a file of the same name: the folder is what is meant.
            files.pop(root, None)
        self._files, self._dirs = files, dirs


def as_path(path: str | os.PathLike[str] | RemotePath) -> Path | RemotePath:
    """`RemotePath` for a remote URL, `pathlib.Path` otherwise."""
    if isinstance(path, RemotePath):
        return path
    return RemotePath(str(path)) if is_remote(path) else Path(path)
