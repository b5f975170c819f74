"""A zip of a catalog file and its photos, as the catalog API's import jobs take it: unpacked into
the job's folder with every limit checked before a byte is written.

The zip comes from a catalog token, not from the operator, so it is read as hostile: the central
directory's size is read from the end record before zipfile parses it (a 64 MB zip of empty members
would otherwise cost half a gigabyte of ZipInfo objects), members are counted, their declared sizes
summed and their compression ratio bounded, each member's bytes are counted as they are written (a
header may lie), and a name that is absolute, climbs with `..` or is a link is refused. The photos
are then read only from inside the catalog file's folder (pipeline._Reader).
"""

from __future__ import annotations

import lzma
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from snapsource.ingest.formats import FormatError

MAX_MEMBERS = 100_000
CENTRAL_DIRECTORY_BYTES = 200 * MAX_MEMBERS  # about 200 bytes a member: 46 of header and a long name
MAX_RATIO = 200  # uncompressed : compressed, for members over RATIO_FROM (text is 3-10, photos 1)
RATIO_FROM = 1_000_000
CATALOG_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json")
CHUNK = 1 << 20
_END = b"PK\x05\x06"  # end of central directory record (APPNOTE 4.3.16)
_END64 = b"PK\x06\x06"  # zip64's (4.3.14), found through its locator (4.3.15)
_LOCATOR64 = b"PK\x06\x07"


def is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in (b"PK\x03\x04", _END)


def unpack(archive: Path, folder: Path, max_bytes: int, room: Callable[[int], None] | None = None) -> Path:
    """Unpack `archive` into `folder` (created); the catalog file inside it. FormatError says what
    is wrong with the zip and how to fix it; nothing is left in `folder` then. `room` is given the
    unpacked size before anything is written, and may raise to refuse it."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return _unpack(archive, folder, max_bytes, room)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _unpack(archive: Path, folder: Path, max_bytes: int, room: Callable[[int], None] | None) -> Path:
    with open(archive, "rb") as fh:
        directory = _central_directory_bytes(fh)
    if directory is None:
        raise FormatError(f"{archive.name} is not a zip file that can be read: zip the catalog file and its photos again")
    if directory > CENTRAL_DIRECTORY_BYTES:
        raise FormatError(f"{archive.name} lists more members than a zip may hold here ({MAX_MEMBERS:,}): split the catalog")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise FormatError(
            f"{archive.name} is not a zip file that can be read: zip the catalog file and its photos again"
        ) from None
    with zf:
        members = _members(zf, archive.name, max_bytes)
        catalog = _catalog(members, archive.name)
        needed = sum(info.file_size for info, _ in members)
        if room is not None:
            room(needed)
        if shutil.disk_usage(folder).free < needed + 100_000_000:
            raise FormatError(f"the server has no room for the {needed:,} bytes of {archive.name} unpacked: try again later")
        for info, name in members:
            _write(zf, info, folder / name, archive.name)
    return folder / catalog


def _central_directory_bytes(fh: BinaryIO) -> int | None:
    """The size the zip gives its central directory (what zipfile reads whole), or None when the
    file has no end record (not a zip)."""
    size = fh.seek(0, 2)
    start = max(0, size - (22 + 65535))  # the record, after a comment of at most 64 KiB
    fh.seek(start)
    tail = fh.read()
    at = tail.rfind(_END)
    if at < 0 or len(tail) - at < 22:
        return None
    directory = int(struct.unpack_from("<L", tail, at + 12)[0])
    locator = at - 20
    if locator >= 0 and tail[locator : locator + 4] == _LOCATOR64:
        # zipfile reads the zip64 record just before its locator whenever a locator is there
        record = tail[locator - 56 : locator] if locator >= 56 else b""
        if record[:4] != _END64:
            return None
        return max(int(struct.unpack_from("<Q", record, 40)[0]), 0 if directory == 0xFFFFFFFF else directory)
    return None if directory == 0xFFFFFFFF else directory


def _members(zf: zipfile.ZipFile, where: str, max_bytes: int) -> list[tuple[zipfile.ZipInfo, str]]:
    """The files to write, with their checked names; directories and macOS's extras left out."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise FormatError(f"{where} has {len(infos):,} members, more than {MAX_MEMBERS:,}: split the catalog")
    kept: list[tuple[zipfile.ZipInfo, str]] = []
    names: set[str] = set()
    total = 0
    for info in infos:
        name = _name(info, where)
        if name is None:
            continue
        if name.lower() in names:
            raise FormatError(f"{where} holds {name!r} twice: zip each file once")
        names.add(name.lower())
        if info.flag_bits & 0x1:
            raise FormatError(f"{where}: {name!r} is encrypted: zip the files without a password")
        # deflate is inflated in bounded steps; zipfile inflates bzip2 and LZMA without a bound
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FormatError(
                f"{where}: {name!r} is compressed with a method other than deflate: zip it with deflate (the default of zip tools)"
            )
        if info.file_size > RATIO_FROM and info.file_size > MAX_RATIO * max(1, info.compress_size):
            raise FormatError(
                f"{where}: {name!r} unpacks to {info.file_size:,} bytes from {info.compress_size:,}, more than "
                f"{MAX_RATIO} times: refused as a zip bomb"
            )
        total += info.file_size
        if total > max_bytes:
            raise FormatError(f"{where} unpacks to more than {max_bytes:,} bytes (catalog_import_max_bytes): split the catalog")
        kept.append((info, name))
    return kept


def _name(info: zipfile.ZipInfo, where: str) -> str | None:
    """A member's path, relative and inside the zip, or None for what is not a file of the catalog."""
    raw = info.filename.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise FormatError(f"{where}: {raw[:80]!r} is an absolute path: zip the files with paths relative to the zip")
    parts = [part for part in PurePosixPath(raw).parts if part not in ("", ".")]
    if ".." in parts:
        raise FormatError(f"{where}: {raw[:80]!r} climbs out of the zip (..): zip the files with paths inside it")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise FormatError(f"{where}: {raw[:80]!r} is a symbolic link: zip the files themselves")
    if not parts or raw.endswith("/"):  # a folder, or a member with no name (zipfile's is_dir fails on it)
        return None
    if parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] in (".DS_Store", "Thumbs.db"):
        return None  # what Finder and Explorer add
    if any(len(part.encode()) > 255 for part in parts):
        raise FormatError(f"{where}: {raw[:80]!r} has a name longer than 255 bytes: rename it")
    return "/".join(parts)


def _catalog(members: list[tuple[zipfile.ZipInfo, str]], where: str) -> str:
    """The one member that is the catalog file."""
    found = [name for _, name in members if PurePosixPath(name).suffix.lower() in CATALOG_SUFFIXES]
    if not found:
        raise FormatError(f"{where} holds no catalog file ({', '.join(CATALOG_SUFFIXES)}): zip the catalog file with its photos")
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise FormatError(f"{where} holds {len(found)} catalog files ({shown}): zip one catalog file with its photos")
    return found[0]


def mapping_beside(catalog: Path) -> Path | None:
    """The mapping zipped with a catalog file: the one `.toml` in its folder (a zip of a shop's
    folder as `snapsource ingest shop.csv --mapping shop.toml` reads it); None when none or several."""
    found = [path for path in catalog.parent.iterdir() if path.suffix.lower() == ".toml" and path.is_file()]
    return found[0] if len(found) == 1 else None


def _write(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, where: str) -> None:
    """One member, its bytes counted as they come: no more than its header declared."""
    written = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(path, "wb") as dst:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > info.file_size:
                    raise FormatError(f"{where}: {info.filename[:80]!r} unpacks to more than its header says: zip it again")
                dst.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError, zlib.error, lzma.LZMAError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise FormatError(f"{where}: {info.filename[:80]!r} could not be written on the server: {exc.strerror}") from None
        raise FormatError(
            f"{where}: {info.filename[:80]!r} is damaged (its bytes do not match its checksum): zip it again"
        ) from None
