"""Scale drivers: wire protocols, the serial transport and a fake indicator.

Pick a protocol by name with :func:`make_protocol`, hand it to :class:`SerialScale` with the
port's URL, and read :class:`~terminal.core.ports.ScaleReading` objects from it::

    scale = SerialScale("/dev/ttyUSB0", make_protocol("toledo-continuous", checksum=True))
    reading = scale.read()
"""

from __future__ import annotations

import logging

from terminal.devices.scale.aclas import AclasOs2Protocol
from terminal.devices.scale.ascii_line import AsciiLineProtocol
from terminal.devices.scale.driver import ScaleStatus, SerialScale, frame_to_reading
from terminal.devices.scale.fake import FakeScaleDevice
from terminal.devices.scale.frames import (
    ScaleDisconnectedError,
    ScaleError,
    ScaleFrame,
    ScaleProtocolError,
    to_grams,
)
from terminal.devices.scale.mtsics import MtSicsProtocol
from terminal.devices.scale.protocol import ScaleProtocol
from terminal.devices.scale.registry import PROTOCOLS, make_protocol
from terminal.devices.scale.toledo import ToledoContinuousProtocol

logger = logging.getLogger(__name__)

__all__ = [
    "PROTOCOLS",
    "AclasOs2Protocol",
    "AsciiLineProtocol",
    "FakeScaleDevice",
    "MtSicsProtocol",
    "ScaleDisconnectedError",
    "ScaleError",
    "ScaleFrame",
    "ScaleProtocol",
    "ScaleProtocolError",
    "ScaleStatus",
    "SerialScale",
    "ToledoContinuousProtocol",
    "frame_to_reading",
    "make_protocol",
    "to_grams",
]
