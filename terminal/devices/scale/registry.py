"""Choose a scale protocol by the name used in the terminal's config."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from terminal.devices.scale.aclas import AclasOs2Protocol
from terminal.devices.scale.ascii_line import AsciiLineProtocol
from terminal.devices.scale.frames import ScaleError
from terminal.devices.scale.mtsics import MtSicsProtocol
from terminal.devices.scale.protocol import ScaleProtocol
from terminal.devices.scale.toledo import ToledoContinuousProtocol

logger = logging.getLogger(__name__)

PROTOCOLS: dict[str, Callable[..., ScaleProtocol]] = {
    MtSicsProtocol.name: MtSicsProtocol,
    ToledoContinuousProtocol.name: ToledoContinuousProtocol,
    AclasOs2Protocol.name: AclasOs2Protocol,
    AsciiLineProtocol.name: AsciiLineProtocol,
}


def make_protocol(name: str, **options: Any) -> ScaleProtocol:
    """A fresh protocol decoder by name.

    Args:
        name: ``mt-sics``, ``toledo-continuous``, ``aclas-os2`` or ``ascii-line``.
        **options: the protocol's own settings, e.g. ``checksum=False`` for Toledo,
            ``passive=True`` for Aclas, ``mode="S"`` for MT-SICS.

    Raises:
        ScaleError: the name is unknown (the message lists the known ones) or an option
            does not apply to the protocol.
    """
    factory = PROTOCOLS.get(name)
    if factory is None:
        known = ", ".join(sorted(PROTOCOLS))
        raise ScaleError(f"unknown scale protocol {name!r}; known protocols: {known}")
    try:
        return factory(**options)
    except TypeError as exc:
        raise ScaleError(
            f"bad options {sorted(options)} for scale protocol {name!r}: {exc}"
        ) from exc
