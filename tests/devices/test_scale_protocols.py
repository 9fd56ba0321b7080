"""Exact frames in, exact ScaleFrames out, for every scale protocol; and the bytes we send."""

from __future__ import annotations

import pytest

from terminal.devices.scale import (
    AclasOs2Protocol,
    AsciiLineProtocol,
    FakeScaleDevice,
    MtSicsProtocol,
    ScaleError,
    ScaleFrame,
    ScaleProtocol,
    ScaleProtocolError,
    ToledoContinuousProtocol,
    make_protocol,
    to_grams,
)

LB_G = 453.59237
OZ_G = 28.349523125


def decode_one(protocol: ScaleProtocol, data: bytes) -> ScaleFrame:
    """Feed one frame; exactly one weight frame must come out and nothing be rejected."""
    frames = protocol.feed(data)
    assert protocol.frames_bad == 0, protocol.last_error
    assert len(frames) == 1, frames
    return frames[0]


def rejected(protocol: ScaleProtocol, data: bytes) -> str:
    """Feed a bad frame: no weight may come out; returns the reason the protocol gives."""
    assert protocol.feed(data) == []
    assert protocol.frames_bad == 1
    assert protocol.last_error is not None
    return protocol.last_error


# --------------------------------------------------------------------------- MT-SICS

MTSICS_FRAMES = [
    ("stable", b"S S     100.00 g\r\n", ScaleFrame(100.0, stable=True)),
    ("dynamic", b"S D      99.80 g\r\n", ScaleFrame(99.8, stable=False)),
    ("negative", b"S S     -12.34 g\r\n", ScaleFrame(-12.34, stable=True)),
    ("kg", b"S S      1.500 kg\r\n", ScaleFrame(1500.0, stable=True)),
    ("mg", b"S S       1500 mg\r\n", ScaleFrame(1.5, stable=True)),
    ("lb", b"S S      1.000 lb\r\n", ScaleFrame(LB_G, stable=True)),
    ("oz", b"S S       1.00 oz\r\n", ScaleFrame(OZ_G, stable=True)),
    ("ct", b"S S        5.0 ct\r\n", ScaleFrame(1.0, stable=True)),
    ("t", b"S S   0.001500 t\r\n", ScaleFrame(1500.0, stable=True)),
    ("lf only", b"S S     100.00 g\n", ScaleFrame(100.0, stable=True)),
    ("overload", b"S +\r\n", ScaleFrame(0.0, stable=False, overload=True)),
    ("underload", b"S -\r\n", ScaleFrame(0.0, stable=False, underload=True)),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in MTSICS_FRAMES], ids=[c[0] for c in MTSICS_FRAMES]
)
def test_mtsics_weight_replies(data: bytes, expected: ScaleFrame) -> None:
    got = decode_one(MtSicsProtocol(), data)
    assert got == ScaleFrame(**{**expected.__dict__, "raw": data})


def test_mtsics_weight_after_tare_is_net_with_the_tare_the_scale_reported() -> None:
    protocol = MtSicsProtocol()
    frames = protocol.feed(b"T S      45.20 g\r\nS S      54.80 g\r\n")
    assert frames == [
        ScaleFrame(54.8, stable=True, net=True, tare_g=45.2, raw=b"S S      54.80 g\r\n")
    ]
    assert protocol.frames_ok == 2


def test_mtsics_zero_clears_the_tare() -> None:
    protocol = MtSicsProtocol()
    frames = protocol.feed(b"TA A      45.20 g\r\nZ A\r\nS S      10.00 g\r\n")
    assert frames == [ScaleFrame(10.0, stable=True, raw=b"S S      10.00 g\r\n")]


@pytest.mark.parametrize(
    ("data", "error_mentions"),
    [
        (b"S I\r\n", None),  # busy: no weight, no error
        (b"Z A\r\n", None),
        (b"T I\r\n", None),
        (b"TAC A\r\n", None),
        (b"ES\r\n", "syntax error"),
        (b"ET\r\n", "transmission error"),
        (b"EL\r\n", "logical error"),
        (b"T +\r\n", "overloaded"),
        (b"Z -\r\n", "underloaded"),
    ],
)
def test_mtsics_replies_without_a_weight(data: bytes, error_mentions: str | None) -> None:
    protocol = MtSicsProtocol()
    assert protocol.feed(data) == []
    assert (protocol.frames_ok, protocol.frames_bad) == (1, 0)
    if error_mentions is None:
        assert protocol.last_error is None
    else:
        assert protocol.last_error is not None and error_mentions in protocol.last_error


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"S S     abc.de g\r\n", "not an MT-SICS reply"),
        (b"S X     100.00 g\r\n", "not an MT-SICS reply"),
        (b"S S     100.00 furlong\r\n", "furlong"),
        (b"S S     100.00\r\n", "not an MT-SICS reply"),
        (b"hello\r\n", "not an MT-SICS reply"),
    ],
)
def test_mtsics_malformed_replies_are_counted_not_weighed(data: bytes, reason: str) -> None:
    assert reason in rejected(MtSicsProtocol(), data)


# ------------------------------------------------------------------ Toledo continuous

TOLEDO_FRAMES = [
    ("stable kg", b"\x02-0 001500000000\r.", ScaleFrame(1500.0, True, tare_g=0.0)),
    ("motion", b"\x02-8 001500000000\r&", ScaleFrame(1500.0, False, tare_g=0.0)),
    ("negative", b"\x02-2 000020000000\r0", ScaleFrame(-20.0, True, tare_g=0.0)),
    ("net with tare", b"\x02-1 001100000400\r-", ScaleFrame(1100.0, True, True, 400.0)),
    ("overload", b"\x02-4 999999000000\rz", ScaleFrame(0.0, False, tare_g=0.0, overload=True)),
    ("underload", b"\x02-6 000000000000\r.", ScaleFrame(0.0, False, tare_g=0.0, underload=True)),
    ("lb", b"\x02-  001000000000\rC", ScaleFrame(LB_G, True, tare_g=0.0)),
    ("g", b"\x02*0!001500000000\r0", ScaleFrame(1500.0, True, tare_g=0.0)),
    ("t", b'\x02/0"001500000000\r*', ScaleFrame(15000.0, True, tare_g=0.0)),
    ("oz", b"\x02+ #000100000000\rB", ScaleFrame(10 * OZ_G, True, tare_g=0.0)),
    ("leading spaces", b"\x02-0   1500     0\r\x1e", ScaleFrame(1500.0, True, tare_g=0.0)),
    ("increment x2", b"\x0250 001500000000\r&", ScaleFrame(1500.0, True, tare_g=0.0)),
    ("increment x5", b"\x02=0 001500000000\r\x1e", ScaleFrame(1500.0, True, tare_g=0.0)),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in TOLEDO_FRAMES], ids=[c[0] for c in TOLEDO_FRAMES]
)
def test_toledo_frames(data: bytes, expected: ScaleFrame) -> None:
    got = decode_one(ToledoContinuousProtocol(checksum=True), data)
    assert got == ScaleFrame(**{**expected.__dict__, "raw": data})


@pytest.mark.parametrize(
    ("data", "weight_g"),
    [
        (b"\x02(0 001234000000\r/", 123_400_000.0),  # XXXX00
        (b"\x02)0 001234000000\r.", 12_340_000.0),  # XXXXX0
        (b"\x02*0 001234000000\r-", 1_234_000.0),  # XXXXXX
        (b"\x02+0 001234000000\r,", 123_400.0),  # XXXXX.X
        (b"\x02,0 001234000000\r+", 12_340.0),  # XXXX.XX
        (b"\x02-0 001234000000\r*", 1_234.0),  # XXX.XXX
        (b"\x02.0 001234000000\r)", 123.4),  # XX.XXXX
        (b"\x02/0 001234000000\r(", 12.34),  # X.XXXXX
    ],
    ids=[f"code {code}" for code in range(8)],
)
def test_toledo_decimal_point_positions(data: bytes, weight_g: float) -> None:
    assert decode_one(ToledoContinuousProtocol(), data).weight_g == weight_g


def test_toledo_without_checksum_reads_17_byte_frames() -> None:
    frame = b"\x02-0 001500000000\r"
    assert decode_one(ToledoContinuousProtocol(checksum=False), frame) == ScaleFrame(
        1500.0, True, tare_g=0.0, raw=frame
    )


def test_toledo_7e1_parity_bits_read_on_an_8n1_port_are_ignored() -> None:
    frame = b"\x02-0 001500000000\r."
    with_parity = bytes(b | 0x80 if bin(b).count("1") % 2 else b for b in frame)
    assert with_parity != frame
    assert decode_one(ToledoContinuousProtocol(), with_parity) == ScaleFrame(
        1500.0, True, tare_g=0.0, raw=frame
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x02-0 001500000000\r/", "checksum 0x2F does not match 0x2E"),
        (b"\x02-0 001500000000\r\x02", "checksum"),
        (b"\x02-0 0015x0000000\r.", "weight field"),
        (b"\x02-0 001500000x00\r.", "tare field"),
        (b"\x02+ $000100000000\rA", "unit code 4"),
        (b"\x02-0 0015000000000\r", "not CR"),
        (b"\x02\x0d0 001500000000\r.", "status word A"),
    ],
)
def test_toledo_bad_frames_are_counted_not_weighed(data: bytes, reason: str) -> None:
    assert reason in rejected(ToledoContinuousProtocol(checksum=True), data)


# ----------------------------------------------------------------------- Aclas OS2

ACLAS_FRAMES = [
    ("stable kg", b"\x01\x02S+01.500kgn\x03\x04", ScaleFrame(1500.0, True)),
    ("unstable", b"\x01\x02U+01.500kgh\x03\x04", ScaleFrame(1500.0, False)),
    ("negative", b"\x01\x02S-00.020kgn\x03\x04", ScaleFrame(-20.0, True)),
    ("grams, no point", b"\x01\x02S+001500 g;\x03\x04", ScaleFrame(1500.0, True)),
    ("grams, unit left", b"\x01\x02S+001500g ;\x03\x04", ScaleFrame(1500.0, True)),
    ("leading space", b"\x01\x02S+ 1.500kg~\x03\x04", ScaleFrame(1500.0, True)),
    ("lb", b"\x01\x02S+03.000lbk\x03\x04", ScaleFrame(3 * LB_G, True)),
    ("oz", b"\x01\x02S+010.00ozr\x03\x04", ScaleFrame(10 * OZ_G, True)),
    ("overload", b"\x01\x02F+  OL  kgb\x03\x04", ScaleFrame(0.0, False, overload=True)),
    ("underload", b"\x01\x02F-  OL  kgd\x03\x04", ScaleFrame(0.0, False, underload=True)),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in ACLAS_FRAMES], ids=[c[0] for c in ACLAS_FRAMES]
)
def test_aclas_frames(data: bytes, expected: ScaleFrame) -> None:
    got = decode_one(AclasOs2Protocol(), data)
    assert got == ScaleFrame(**{**expected.__dict__, "raw": data})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x01\x02S+01.500kgo\x03\x04", "BCC 0x6F does not match 0x6E"),
        (b"\x01\x02S+01.500xxb\x03\x04", "unit 'xx' is not supported"),
        (b"\x01\x02X+01.500kgn\x03\x04", "status byte"),
        (b"\x01\x02S*01.500kgn\x03\x04", "sign byte"),
        (b"\x01\x02S+01.5x0kgn\x03\x04", "weight byte"),
        (b"\x01\x02S+01.500kgn\x04\x04", "not ETX"),
        (b"\x01\x02S+01.500kgn\x03\x03", "not EOT"),
    ],
)
def test_aclas_bad_frames_are_counted_not_weighed(data: bytes, reason: str) -> None:
    assert reason in rejected(AclasOs2Protocol(), data)


# ---------------------------------------------------------------------- ASCII line

LINE_FRAMES = [
    ("stable gross", b"ST,GS,+  1.500kg\r\n", ScaleFrame(1500.0, True)),
    ("unstable", b"US,GS,+  1.500kg\r\n", ScaleFrame(1500.0, False)),
    ("net negative", b"ST,NT,-  0.020kg\r\n", ScaleFrame(-20.0, True, net=True)),
    ("grams", b"ST,GS,+   1500g\r\n", ScaleFrame(1500.0, True)),
    ("lb", b"ST,GS,+  3.000lb\r\n", ScaleFrame(3 * LB_G, True)),
    ("oz", b"ST,GS,+  10.00oz\r\n", ScaleFrame(10 * OZ_G, True)),
    ("overload", b"OL,GS,+  9.999kg\r\n", ScaleFrame(0.0, False, overload=True)),
    ("overload dashes", b"OL,GS,+ ------kg\r\n", ScaleFrame(0.0, False, overload=True)),
    ("underload", b"OL,GS,-  0.000kg\r\n", ScaleFrame(0.0, False, underload=True)),
    ("no sign, spaced unit", b"ST,GS,   245.6 g\r\n", ScaleFrame(245.6, True)),
    ("space for comma", b"ST,GS    20.7g\r\n", ScaleFrame(20.7, True)),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in LINE_FRAMES], ids=[c[0] for c in LINE_FRAMES]
)
def test_ascii_line_frames(data: bytes, expected: ScaleFrame) -> None:
    got = decode_one(AsciiLineProtocol(), data)
    assert got == ScaleFrame(**{**expected.__dict__, "raw": data})


def test_ascii_line_net_frames_carry_the_tare_of_the_last_tare_line() -> None:
    protocol = AsciiLineProtocol()
    frames = protocol.feed(b"ST,TR,+  0.400kg\r\nST,NT,+  1.100kg\r\n")
    assert frames == [ScaleFrame(1100.0, True, True, 400.0, raw=b"ST,NT,+  1.100kg\r\n")]


@pytest.mark.parametrize(
    "data",
    [b"ST,XX,+  1.500kg\r\n", b"ST,GS,+  1.500furlong\r\n", b"ST,GS,+  1.5.0kg\r\n", b"ST\r\n"],
)
def test_ascii_line_malformed_lines_are_counted_not_weighed(data: bytes) -> None:
    assert "not a ST/US/OL" in rejected(AsciiLineProtocol(), data)


# ------------------------------------------------ streams: splits, bursts, garbage

STREAMS: list[tuple[str, ScaleProtocol, list[bytes]]] = [
    ("mt-sics", MtSicsProtocol(), [c[1] for c in MTSICS_FRAMES[:4]]),
    ("toledo", ToledoContinuousProtocol(), [c[1] for c in TOLEDO_FRAMES[:4]]),
    (
        "toledo no checksum",
        ToledoContinuousProtocol(checksum=False),
        [b"\x02-0 001500000000\r", b"\x02-8 000020000000\r"],
    ),
    ("aclas", AclasOs2Protocol(), [c[1] for c in ACLAS_FRAMES[:4]]),
    ("ascii-line", AsciiLineProtocol(), [c[1] for c in LINE_FRAMES[:4]]),
]
STREAM_IDS = [s[0] for s in STREAMS]


def fresh(protocol: ScaleProtocol) -> ScaleProtocol:
    """A new protocol like ``protocol`` (the tables hold one instance each)."""
    if isinstance(protocol, ToledoContinuousProtocol):
        return ToledoContinuousProtocol(checksum=protocol.checksum)
    return type(protocol)()


@pytest.mark.parametrize(("name", "protocol", "frames"), STREAMS, ids=STREAM_IDS)
def test_several_frames_in_one_chunk(
    name: str, protocol: ScaleProtocol, frames: list[bytes]
) -> None:
    expected = [decode_one(fresh(protocol), frame) for frame in frames]
    decoder = fresh(protocol)
    assert decoder.feed(b"".join(frames)) == expected
    assert (decoder.frames_ok, decoder.frames_bad, decoder.bytes_discarded) == (len(frames), 0, 0)


@pytest.mark.parametrize(("name", "protocol", "frames"), STREAMS, ids=STREAM_IDS)
def test_split_at_every_byte_boundary_gives_the_same_frames(
    name: str, protocol: ScaleProtocol, frames: list[bytes]
) -> None:
    stream = b"".join(frames)
    expected = fresh(protocol).feed(stream)
    for cut in range(len(stream) + 1):
        decoder = fresh(protocol)
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == expected, cut
    one_at_a_time = fresh(protocol)
    assert [f for i in range(len(stream)) for f in one_at_a_time.feed(stream[i : i + 1])] == (
        expected
    )


GARBAGE = [
    b"\x00\xff\x13garbage",
    b"\x02\x01\x02S+\r\n",  # false starts of every protocol, cut short
    b"S S 12\r\nST,GS\r\n",
]


@pytest.mark.parametrize(("name", "protocol", "frames"), STREAMS, ids=STREAM_IDS)
@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_before_and_between_frames_resyncs(
    name: str, protocol: ScaleProtocol, frames: list[bytes], garbage: bytes
) -> None:
    expected = fresh(protocol).feed(b"".join(frames))
    decoder = fresh(protocol)
    stream = garbage + garbage.join(frames) + garbage
    assert decoder.feed(stream) == expected
    assert decoder.frames_bad + decoder.bytes_discarded > 0


@pytest.mark.parametrize(
    "protocol", [MtSicsProtocol(), AsciiLineProtocol()], ids=["mt-sics", "ascii-line"]
)
def test_endless_noise_without_line_end_is_dropped_and_the_next_frame_still_read(
    protocol: ScaleProtocol,
) -> None:
    frame = MTSICS_FRAMES[0][1] if isinstance(protocol, MtSicsProtocol) else LINE_FRAMES[0][1]
    for _ in range(10):
        assert protocol.feed(b"x" * 1000) == []
    assert protocol.bytes_discarded >= 9000
    assert protocol.frames_bad >= 1
    assert len(protocol.feed(b"\r\n" + frame)) == 1


# ------------------------------------------------------------ commands we send


@pytest.mark.parametrize(
    ("protocol", "connect", "poll", "tare", "zero"),
    [
        (MtSicsProtocol(), None, b"SI\r\n", b"T\r\n", b"Z\r\n"),
        (MtSicsProtocol(mode="S"), None, b"S\r\n", b"T\r\n", b"Z\r\n"),
        (MtSicsProtocol(mode="SIR"), b"SIR\r\n", None, b"T\r\n", b"Z\r\n"),
        (ToledoContinuousProtocol(), None, None, b"T\r\n", b"Z\r\n"),
        (AclasOs2Protocol(), None, None, b"<TK>\t", b"<ZK>\t"),
        (AclasOs2Protocol(passive=True), None, b"\x05", b"<TK>\t", b"<ZK>\t"),
        (AsciiLineProtocol(), None, None, None, None),
    ],
    ids=["mt-sics SI", "mt-sics S", "mt-sics SIR", "toledo", "aclas", "aclas passive", "ascii"],
)
def test_command_bytes(
    protocol: ScaleProtocol,
    connect: bytes | None,
    poll: bytes | None,
    tare: bytes | None,
    zero: bytes | None,
) -> None:
    assert protocol.connect_request() == connect
    assert protocol.poll_request() == poll
    assert protocol.tare_command() == tare
    assert protocol.zero_command() == zero
    assert protocol.pending_writes() == b""


def test_aclas_passive_answers_each_ack_with_one_dc1() -> None:
    protocol = AclasOs2Protocol(passive=True)
    assert protocol.feed(b"\x06") == []
    assert protocol.pending_writes() == b"\x11"
    assert protocol.pending_writes() == b""  # drained once written
    frame = ACLAS_FRAMES[0][1]
    assert len(protocol.feed(frame)) == 1
    assert protocol.pending_writes() == b""  # the BCC or ETX of a frame is no handshake
    assert protocol.bytes_discarded == 0


def test_aclas_active_mode_ignores_ack() -> None:
    protocol = AclasOs2Protocol(passive=False)
    assert protocol.feed(b"\x06") == []
    assert protocol.pending_writes() == b""


def test_make_protocol_names_and_options() -> None:
    assert isinstance(make_protocol("mt-sics"), MtSicsProtocol)
    assert isinstance(make_protocol("toledo-continuous"), ToledoContinuousProtocol)
    assert make_protocol("toledo-continuous", checksum=False).poll_request() is None
    assert make_protocol("aclas-os2", passive=True).poll_request() == b"\x05"
    assert isinstance(make_protocol("ascii-line"), AsciiLineProtocol)
    with pytest.raises(ScaleError, match="aclas-os2, ascii-line, mt-sics, toledo-continuous"):
        make_protocol("dibal")
    with pytest.raises(ScaleError, match="bad options"):
        make_protocol("ascii-line", checksum=True)
    with pytest.raises(ScaleError, match="S, SI or SIR"):
        make_protocol("mt-sics", mode="P")


@pytest.mark.parametrize(
    ("value", "unit", "grams"),
    [
        ("1.5", "kg", 1500.0),
        ("1", "lb", LB_G),
        ("1", "oz", OZ_G),
        ("5", "ct", 1.0),
        ("0.0015", "t", 1500.0),
        ("250", "mg", 0.25),
        ("12.3", " G ", 12.3),
    ],
)
def test_to_grams(value: str, unit: str, grams: float) -> None:
    assert to_grams(value, unit) == grams


def test_to_grams_rejects_an_unknown_unit_and_lists_the_known() -> None:
    with pytest.raises(ScaleProtocolError, match="mg, g, kg, t, lb, oz, ct"):
        to_grams("1", "dwt")


# ------------------------------------------------------------- the shipped fake


@pytest.mark.parametrize(
    ("protocol_name", "host_sends", "fake_answers"),
    [
        ("mt-sics", b"SI\r\n", b"S S    1500.00 g\r\n"),
        ("mt-sics", b"S\r\n", b"S S    1500.00 g\r\n"),
        ("mt-sics", b"T\r\n", b"T S    1500.00 g\r\n"),
        ("mt-sics", b"Z\r\n", b"Z A\r\n"),
        ("mt-sics", b"XYZ\r\n", b"ES\r\n"),
        ("aclas-os2", b"\x05", b"\x06"),
        ("aclas-os2", b"\x11", b"\x01\x02S+001500 g;\x03\x04"),
        ("toledo-continuous", b"T\r\n", b""),
    ],
)
def test_fake_scale_device_answers_like_an_indicator(
    protocol_name: str, host_sends: bytes, fake_answers: bytes
) -> None:
    device = FakeScaleDevice(protocol_name, unit="g")
    device.place(1500.0)
    assert device.respond(host_sends) == fake_answers
    assert device.received == host_sends


def test_fake_scale_device_tare_makes_its_frames_net() -> None:
    device = FakeScaleDevice("toledo-continuous", unit="g")
    device.place(400.0)
    device.respond(b"T\r\n")
    device.place(1500.0)
    assert decode_one(ToledoContinuousProtocol(), device.frame()) == ScaleFrame(
        1100.0, True, True, 400.0, raw=device.frame()
    )
