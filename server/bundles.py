"""Model bundles as the server keeps them: one tar.gz archive per version, checked on the way in.

``trayscan backend publish-bundle DIR`` packs a verified bundle folder with :func:`pack_bundle`
(the same folder always gives the same bytes, so its SHA-256 is stable); the admin upload
``POST /v1/admin/bundles`` unpacks the archive into a scratch folder with :func:`check_archive`
and verifies it with :func:`vision.bundle.verify_bundle` before storing it, so a terminal is never
offered a bundle that would not load. The archive holds the bundle's files at its top level.
"""

from __future__ import annotations

import gzip
import io
import logging
import tarfile
import tempfile
from pathlib import Path

from vision.bundle import BundleError, verify_bundle

logger = logging.getLogger(__name__)

#: The largest archive the server accepts.
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024


class BundleArchiveError(ValueError):
    """An archive that is not a usable bundle; the message says why."""


def pack_bundle(folder: Path) -> tuple[str, bytes]:
    """Verify a bundle folder and pack it as a reproducible tar.gz.

    Returns:
        The bundle's version and the archive's bytes.

    Raises:
        BundleArchiveError: the folder is not a valid bundle.
    """
    try:
        bundle = verify_bundle(folder)
    except BundleError as exc:
        raise BundleArchiveError(str(exc)) from None
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return bundle.version, buffer.getvalue()


def check_archive(archive: bytes) -> str:
    """Unpack an uploaded archive into a scratch folder and verify the bundle in it.

    Returns:
        The bundle's version.

    Raises:
        BundleArchiveError: not a tar.gz, a member that would land outside the folder or is not
            a plain file or folder, or a bundle that does not verify.
    """
    if len(archive) > MAX_ARCHIVE_BYTES:
        raise BundleArchiveError(f"archive of {len(archive)} bytes is over the limit")
    with tempfile.TemporaryDirectory(prefix="trayscan-bundle-") as scratch:
        root = Path(scratch)
        try:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                for member in tar.getmembers():
                    if not (member.isfile() or member.isdir()):
                        raise BundleArchiveError(f"member {member.name!r} is not a plain file")
                tar.extractall(root, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BundleArchiveError(f"not a readable tar.gz archive: {exc}") from None
        try:
            bundle = verify_bundle(root)
        except BundleError as exc:
            raise BundleArchiveError(str(exc).replace(str(root), "<archive>")) from None
    return bundle.version
