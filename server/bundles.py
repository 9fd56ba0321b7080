"""Model bundles as the server keeps them: one tar.gz archive per version, checked on the way in.

``trayscan backend publish-bundle DIR`` packs a verified bundle folder with :func:`pack_bundle`
(the same folder always gives the same bytes, so its SHA-256 is stable); the admin upload
``POST /v1/admin/bundles`` unpacks the archive into a scratch folder with :func:`check_archive`
and verifies it with :func:`vision.bundle.verify_bundle` before storing it, so a terminal is never
offered a bundle whose files do not match its manifest; whether its models load, the terminal
checks before it swaps a bundle in (and refuses it, going on with the one it runs). The archive
holds the bundle's files at its top level.
"""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
from pathlib import Path

from vision.bundle import BundleError, verify_bundle
from vision.bundle import pack_bundle as vision_pack_bundle

logger = logging.getLogger(__name__)

#: The largest archive the server accepts.
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024


class BundleArchiveError(ValueError):
    """An archive that is not a usable bundle; the message says why."""


def pack_bundle(folder: Path) -> tuple[str, bytes]:
    """Verify a bundle folder and pack it as a reproducible tar.gz (see
    :func:`vision.bundle.pack_bundle`).

    Raises:
        BundleArchiveError: the folder is not a valid bundle.
    """
    try:
        return vision_pack_bundle(folder)
    except BundleError as exc:
        raise BundleArchiveError(str(exc)) from None


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
