"""The one place that reads the config and wires concrete parts together.

:func:`build_terminal` checks everything before it starts anything: a config that names a
missing file, a menu with a bad price or a device type this build lacks stops the start with a
message naming the key, and nothing runs half-configured.
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from calibration.profile import CalibratedScale, TerminalProfile, load_profile
from terminal.backend.audit_store import AuditStoreError, SqliteAuditLog
from terminal.backend.campus import CampusCardBackend, CampusCardSetupError
from terminal.backend.cashier_store import CashierStoreError, SqliteCashierStore
from terminal.backend.http import HttpBackend
from terminal.backend.ledger import EmbeddedLedger, LedgerError
from terminal.backend.outbox import Outbox, OutboxError
from terminal.backend.payments import OfflinePolicy, OutboxBackend, OutboxWorker, RemoteLedger
from terminal.backend.sync import Heartbeat
from terminal.captures import CaptureRecorder, CaptureStore, CaptureWriter
from terminal.config import (
    DEMO_CARDS,
    BundleModelConfig,
    CameraConfig,
    CampusCardConfig,
    EmbeddedBackendConfig,
    FakeCardReaderConfig,
    FakeScaleConfig,
    GroundTruthModelConfig,
    HttpBackendConfig,
    LoadedConfig,
    ReplayCameraConfig,
    SerialCardReaderConfig,
    VideoCameraConfig,
    check_paths,
)
from terminal.core.cashier import CashierDesk, enrol_cashier
from terminal.core.menu import Menu
from terminal.core.ports import (
    BackendRequestError,
    BackendUnavailableError,
    CardReader,
    LedgerBackend,
    Recogniser,
    Scale,
)
from terminal.core.pricing import WeightRules
from terminal.core.session import CheckoutSession
from terminal.devices.cards import CardReaderError, SerialCardReader
from terminal.devices.face.camera import FrameSourceCamera
from terminal.devices.fakes import FakeCardReader, FakeScale
from terminal.devices.scale import ScaleError, SerialScale
from terminal.devices.wedge import EvdevWedgeReader, WedgeDecoder
from terminal.menu_file import load_menu
from terminal.yamlmodels import FileError
from vision.bundle import BundleError, BundleStore, verify_bundle
from vision.fakes import GroundTruthRecogniser
from vision.labels import LabelError, read_class_names
from vision.recogniser import BundleRecogniser, SwappableRecogniser
from vision.sources import FrameSource, FrameSourceError, make_source
from vision.types import Frame

if TYPE_CHECKING:
    from terminal.devices.face.parts import FaceParts

logger = logging.getLogger(__name__)

#: The demo's diners: card id -> (account id, display name).
DEMO_ACCOUNTS = {
    DEMO_CARDS[0]: ("E1001", "王伟"),
    DEMO_CARDS[1]: ("E1002", "李娜"),
    DEMO_CARDS[2]: ("E1003", "张敏"),
}
#: The demo's cashier: id, name, PIN, role (the README says so; a real terminal enrols its own).
DEMO_CASHIER = ("demo", "演示收银员", "1234", "supervisor")
DEMO_MIN_BALANCE_FEN = 5_000
DEMO_TOP_UP_FEN = 20_000


class StartupError(RuntimeError):
    """The terminal cannot start as configured; the message says what to fix."""


@dataclass
class Terminal:
    """The wired parts of one terminal."""

    loaded: LoadedConfig
    menu: Menu
    session: CheckoutSession
    camera: FrameSource
    scale: Scale
    card_reader: CardReader
    recogniser: Recogniser
    backend: LedgerBackend
    truth: GroundTruthRecogniser | None = None
    profile: TerminalProfile | None = None
    outbox: Outbox | None = None
    worker: OutboxWorker | None = None
    #: The cashier's operations (PIN-checked, audited); None only in configuration checks.
    desk: CashierDesk | None = None
    #: Transaction ids the outbox worker delivered, waiting to be told to the session's thread.
    posted: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue)
    #: Keeps each paid tray's frame and dishes for the data staff; None when disabled.
    captures: CaptureRecorder | None = None
    #: Face accounts (enrolment, matching, face payment); None unless ``face.enabled``.
    face: FaceParts | None = None
    #: The camera facing the diner (``face.camera``), for paying by face and enrolment.
    customer_camera: FrameSourceCamera | None = None

    def frame_settled(self, frame: Frame) -> None:
        """The loops call this with the frame the current checkout is recognised from."""
        if self.captures is not None:
            self.captures.frame_settled(frame)

    def deliver_posted(self) -> int:
        """Tell the session about transactions the worker posted; call from the session's
        thread (the session is not thread-safe). Returns how many."""
        count = 0
        while True:
            try:
                transaction_id = self.posted.get_nowait()
            except queue.Empty:
                return count
            self.session.posted(transaction_id)
            count += 1

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        for part in (self.camera, self.scale, self.card_reader, self.backend):
            close_quietly(part)
        if self.desk is not None:
            close_quietly(self.desk.store)
            close_quietly(self.desk.audit)
        if self.captures is not None:
            close_quietly(self.captures)
        if self.customer_camera is not None:
            close_quietly(self.customer_camera)


class EmptySource(FrameSource):
    """A camera that is not opened (configuration checks)."""

    def read(self) -> None:
        return None


def check_terminal(loaded: LoadedConfig) -> Menu:
    """Everything that can be checked without opening a device or writing a file, the model
    bundle's ONNX files included.

    Returns today's menu. Raises StartupError naming what is wrong.
    """
    menu, _ = _check_files(loaded)
    _recogniser(loaded, menu, check_only=True)
    return menu


def _check_files(loaded: LoadedConfig) -> tuple[Menu, TerminalProfile | None]:
    """The config's files, menu and calibration profile, checked and read once."""
    problems = check_paths(loaded)
    if problems:
        raise StartupError("\n".join(problems))
    config = loaded.config
    if config.menu.source != "file" and isinstance(config.backend, EmbeddedBackendConfig):
        raise StartupError(
            f"{loaded.where('menu', 'source')}: menu.source: 'backend' needs an http backend"
        )
    menu_path = (
        loaded.resolve(config.menu.path)
        if config.menu.source == "file"
        else _menu_from_backend(loaded)
    )
    try:
        menu = load_menu(menu_path)
    except FileError as exc:
        raise StartupError(str(exc)) from None
    if menu.default_tray() is None:
        raise StartupError(f"{config.menu.path}: the menu lists no tableware of kind 'tray'")
    profile = load_calibration(loaded)
    if profile is not None and profile.scale is not None:
        menu = with_measured_tares(menu, profile.scale.tableware_tares_g)
    return menu, profile


def load_calibration(loaded: LoadedConfig) -> TerminalProfile | None:
    """The terminal's calibration profile, or None when it has not been calibrated yet.

    A profile that exists but is wrong stops the start: weighing with a bad span would charge
    every diner wrongly.
    """
    path = loaded.resolve(loaded.config.calibration)
    if not path.exists():
        logger.info("no calibration profile at %s: using the scale and camera as they are", path)
        return None
    try:
        return load_profile(path)
    except FileError as exc:
        raise StartupError(f"calibration profile refused:\n{exc}") from None


def with_measured_tares(menu: Menu, tares_g: Mapping[str, int]) -> Menu:
    """The menu with its tableware tares replaced by those measured at calibration."""
    if not tares_g:
        return menu
    tableware = tuple(
        replace(ware, tare_g=tares_g[ware.id]) if ware.id in tares_g else ware
        for ware in menu.tableware
    )
    return Menu(menu.items, tableware, menu.name_zh, menu.name_en)


def build_terminal(
    loaded: LoadedConfig, *, seed_demo_accounts: bool = False, check_only: bool = False
) -> Terminal:
    """Check the config and build every part; raises StartupError before anything starts.

    With ``check_only`` nothing is opened or written (see :func:`check_terminal`) and the
    terminal returned has fakes in place of its devices and an in-memory ledger.
    """
    # The bundle is verified and loaded once, by _recogniser; a start needs no separate check.
    menu, profile = _check_files(loaded)
    config = loaded.config
    tray = menu.default_tray()
    recogniser = _recogniser(loaded, menu, check_only=check_only)
    truth = _replay_truth(loaded, menu)

    opened: list[object] = []
    try:
        camera = _camera(loaded, check_only=check_only)
        opened.append(camera)
        scale = _scale(loaded, profile, check_only=check_only)
        opened.append(scale)
        card_reader = _card_reader(loaded, check_only=check_only)
        opened.append(card_reader)
        backend, outbox = _backend(loaded, check_only=check_only)
        opened.append(backend)
    except BaseException:
        for part in opened:
            close_quietly(part)
        raise
    if (
        seed_demo_accounts
        and isinstance(backend, EmbeddedLedger)
        and isinstance(config.card_reader, FakeCardReaderConfig)
    ):
        seed_demo_ledger(backend, config.card_reader.cards)

    thresholds = config.thresholds
    rules = WeightRules(
        min_ratio=thresholds.weight_min_ratio,
        max_ratio=thresholds.weight_max_ratio,
        empty_tray_max_g=thresholds.empty_tray_max_g,
    )
    session = CheckoutSession(menu, config.terminal_id, rules=rules, tray=tray)
    logger.info(
        "terminal %s ready: %d dishes on the menu, model %s",
        config.terminal_id,
        len(menu),
        recogniser.model_version,
    )
    terminal = Terminal(
        loaded, menu, session, camera, scale, card_reader, recogniser, backend, truth, profile
    )
    if not check_only:
        terminal.desk = _desk(loaded, session, backend, seed_demo=seed_demo_accounts)
        terminal.captures = _captures(loaded, session, profile)
        terminal.face = _face(loaded, backend, terminal.desk)
        if terminal.face is not None and loaded.config.face.camera is not None:
            terminal.customer_camera = FrameSourceCamera(
                _open_camera(loaded, loaded.config.face.camera, ("face", "camera"))
            )
    if isinstance(backend, OutboxBackend) and outbox is not None and not check_only:
        terminal.outbox = outbox
        outbox.recover()
        heartbeat = None
        if isinstance(backend.online, HttpBackend):
            heartbeat = Heartbeat(
                backend.online,
                recogniser,
                loaded.resolve(config.data_dir) / "downloads",
                status=lambda: {"outbox_depth": outbox.depth(), "state": session.state.value},
            )
        worker = OutboxWorker(
            outbox,
            backend.online,
            on_posted=terminal.posted.put,
            sync=_with_face_sync(backend.sync_accounts, terminal.face),
            heartbeat=heartbeat,
        )
        backend.set_on_queued(worker.wake)
        terminal.worker = worker
        worker.start()
    return terminal


def _face(
    loaded: LoadedConfig, backend: LedgerBackend, desk: CashierDesk | None
) -> FaceParts | None:
    """Face accounts from the ``face:`` section: models, encrypted cache, matcher, payment."""
    config = loaded.config.face
    if not config.enabled:
        return None
    from terminal.backend.face_cache import FaceCacheError, load_key
    from terminal.backend.face_sync import FaceTemplateBackend
    from terminal.devices.face.liveness import LivenessPolicy
    from terminal.devices.face.parts import build_face_parts
    from terminal.devices.face.quality import QualityPolicy
    from terminal.devices.face.types import FaceModelError

    templates = backend.online if isinstance(backend, OutboxBackend) else backend
    if not isinstance(templates, FaceTemplateBackend):
        raise StartupError(
            f"{loaded.where('face', 'enabled')}: face.enabled: the configured backend keeps no "
            "face templates (use the embedded ledger or an http backend)"
        )
    key_file = loaded.resolve(config.cache_key_file) if config.cache_key_file else None
    try:
        return build_face_parts(
            templates=templates,
            payments=backend,
            audit=desk.audit if desk is not None else None,
            cache_path=loaded.resolve(config.cache),
            cache_key=load_key(key_file, config.cache_key_env),
            detector_model=loaded.resolve(config.detector_model),
            quality=QualityPolicy(
                min_face_px=config.min_face_px, min_sharpness=config.min_sharpness
            ),
            liveness=LivenessPolicy(
                prompt=config.liveness.prompt,
                min_frames=config.liveness.min_frames,
                min_parallax=config.liveness.min_parallax,
                check_screen=config.liveness.check_screen,
            ),
            threshold=config.match_threshold,
            margin=config.match_margin,
        )
    except (FaceModelError, FaceCacheError) as exc:
        raise StartupError(f"{loaded.where('face')}: face: {exc}") from None


def _with_face_sync(sync: Callable[[], int], face: FaceParts | None) -> Callable[[], int]:
    """The worker's account refresh, followed by the face templates' when face is on."""
    if face is None:
        return sync

    def both() -> int:
        count = sync()
        face.sync()
        return count

    return both


def _captures(
    loaded: LoadedConfig, session: CheckoutSession, profile: TerminalProfile | None
) -> CaptureRecorder | None:
    """The capture store and its writer; a folder that cannot be used turns captures off
    (with an error in the log) rather than stopping the checkout."""
    config = loaded.config.captures
    if not config.enabled:
        return None
    folder = loaded.resolve(config.folder)
    try:
        store = CaptureStore(
            folder,
            max_bytes=config.max_mb * 2**20,
            retention_days=config.retention_days,
            min_free_bytes=config.min_free_mb * 2**20,
        )
        store.recover()
        store.prune()
    except OSError as exc:
        logger.error("%s: captures.folder: %s; no captures are kept", loaded.where("captures"), exc)
        return None
    camera = profile.camera if profile is not None else None
    if camera is None:
        logger.warning("no calibrated tray area: captures keep the whole frame")
    return CaptureRecorder(
        session,
        CaptureWriter(store),
        tray_area=camera.tray_area if camera is not None else None,
        calibrated_size=(camera.frame_width, camera.frame_height) if camera is not None else None,
        terminal_id=loaded.config.terminal_id,
        keep_voided=config.keep_voided,
    )


def _desk(
    loaded: LoadedConfig, session: CheckoutSession, backend: LedgerBackend, *, seed_demo: bool
) -> CashierDesk:
    """The cashier desk over the terminal's cashier PINs and audit log (in ``data_dir``)."""
    data_dir = loaded.resolve(loaded.config.data_dir)
    try:
        store = SqliteCashierStore(data_dir / "cashiers.db")
        audit = SqliteAuditLog(data_dir / "audit.db", terminal_id=loaded.config.terminal_id)
    except (CashierStoreError, AuditStoreError) as exc:
        raise StartupError(f"{loaded.where('data_dir')}: data_dir: {exc}") from None
    if seed_demo and store.get(DEMO_CASHIER[0]) is None:
        enrol_cashier(store, *DEMO_CASHIER, audit=audit, actor="demo")
    return CashierDesk(session, backend, store, audit)


def _backend(loaded: LoadedConfig, *, check_only: bool) -> tuple[LedgerBackend, Outbox | None]:
    """The embedded ledger, or the outbox in front of the configured remote backend."""
    config = loaded.config.backend
    if isinstance(config, EmbeddedBackendConfig):
        ledger_path = Path(":memory:") if check_only else loaded.resolve(config.ledger)
        try:
            return EmbeddedLedger(ledger_path), None
        except LedgerError as exc:
            raise StartupError(
                f"{loaded.where('backend', 'ledger')}: backend.ledger: {exc}"
            ) from None
    online: RemoteLedger
    if isinstance(config, CampusCardConfig):
        try:
            online = CampusCardBackend(config, home=loaded.home)
        except CampusCardSetupError as exc:
            raise StartupError(f"{loaded.where('backend')}: backend: {exc}") from None
    else:
        online = _remote(loaded)
    outbox_path = ":memory:" if check_only else loaded.resolve(config.outbox)
    try:
        outbox = Outbox(outbox_path)
    except OutboxError as exc:
        raise StartupError(f"{loaded.where('backend', 'outbox')}: backend.outbox: {exc}") from None
    offline = config.offline
    policy = OfflinePolicy(
        enabled=offline.enabled,
        per_account_daily_fen=offline.per_card_daily_limit_fen,
        max_cache_age_s=offline.max_cache_age_h * 3600,
    )
    return OutboxBackend(online, outbox, policy=policy), outbox


def _remote(loaded: LoadedConfig) -> HttpBackend:
    config = loaded.config.backend
    assert isinstance(config, HttpBackendConfig)
    secret = config.secret
    if config.secret_file is not None:
        path = loaded.resolve(config.secret_file)
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StartupError(
                f"{loaded.where('backend', 'secret_file')}: backend.secret_file: cannot read "
                f"{path}: {exc.strerror}"
            ) from None
    assert secret is not None
    verify: bool | str = config.verify_tls
    if isinstance(verify, str):
        verify = str(loaded.resolve(verify))
    return HttpBackend(
        config.url,
        loaded.config.terminal_id,
        secret,
        timeout_s=config.timeout_s,
        verify=verify,
        retries=config.retries,
    )


def _menu_from_backend(loaded: LoadedConfig) -> Path:
    """Today's menu from the backend, kept on disk so a start while it is down uses the last."""
    cached = loaded.resolve(loaded.config.data_dir) / "menu-from-backend.json"
    online = _remote(loaded)
    try:
        document = online.menu_today()
    except (BackendUnavailableError, BackendRequestError) as exc:
        if cached.is_file():
            logger.warning("menu from the backend unavailable (%s): using %s", exc, cached)
            return cached
        raise StartupError(
            f"{loaded.where('menu', 'source')}: menu.source: the backend has no menu for "
            f"today and none was kept from before: {exc}"
        ) from None
    finally:
        close_quietly(online)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(document["menu"], ensure_ascii=False, indent=1), encoding="utf-8")
    return cached


def close_quietly(part: object) -> None:
    """Release a device, logging rather than raising: used while shutting down."""
    for name in ("close", "stop"):
        method = getattr(part, name, None)
        if callable(method):
            try:
                method()
            except Exception:
                logger.exception("closing %r failed", part)
            return


def _camera(loaded: LoadedConfig, *, check_only: bool) -> FrameSource:
    if check_only and not isinstance(loaded.config.camera, ReplayCameraConfig):
        return EmptySource()
    return _open_camera(loaded, loaded.config.camera, ("camera",))


def _open_camera(loaded: LoadedConfig, camera: CameraConfig, key: tuple[str, ...]) -> FrameSource:
    """A camera from its config section (the tray camera, or the one facing the diner)."""
    try:
        if isinstance(camera, ReplayCameraConfig):
            return make_source("replay", folder=loaded.resolve(camera.folder), loop=camera.loop)
        if isinstance(camera, VideoCameraConfig):
            return make_source("video", path=loaded.resolve(camera.path), loop=camera.loop)
        return make_source(
            "opencv",
            device=camera.device,
            width=camera.width,
            height=camera.height,
            fps=camera.fps,
        )
    except FrameSourceError as exc:
        raise StartupError(f"{loaded.where(*key)}: {'.'.join(key)}: {exc}") from None


def _scale(loaded: LoadedConfig, profile: TerminalProfile | None, *, check_only: bool) -> Scale:
    scale = loaded.config.scale
    if isinstance(scale, FakeScaleConfig) or check_only:
        settle = scale.settle_readings if isinstance(scale, FakeScaleConfig) else 0
        return FakeScale(settle_readings=settle)
    try:
        serial_scale = SerialScale(
            scale.url,
            scale.protocol,
            baudrate=scale.baudrate,
            bytesize=scale.bytesize,
            parity=scale.parity,
            stopbits=scale.stopbits,
            timeout_s=scale.timeout_s,
        )
    except ScaleError as exc:
        raise StartupError(f"{loaded.where('scale')}: scale: {exc}") from None
    if profile is None or profile.scale is None:
        logger.warning("the scale is not calibrated: run trayscan calibrate scale")
        return serial_scale
    return CalibratedScale(serial_scale, profile.scale)


def _card_reader(loaded: LoadedConfig, *, check_only: bool) -> CardReader:
    reader = loaded.config.card_reader
    if isinstance(reader, FakeCardReaderConfig):
        return FakeCardReader(reader.cards)
    if check_only:
        return FakeCardReader()
    try:
        if isinstance(reader, SerialCardReaderConfig):
            serial_reader = SerialCardReader(
                reader.url,
                baudrate=reader.baudrate,
                protocol=reader.protocol,
                byte_order=reader.byte_order,
                uid_format=reader.uid_format,
                debounce_s=reader.debounce_s,
            )
            serial_reader.start()
            return serial_reader
        wedge = EvdevWedgeReader(
            reader.device,
            grab=reader.grab,
            decoder=WedgeDecoder(byte_order=reader.byte_order, uid_format=reader.uid_format),
            debounce_s=reader.debounce_s,
        )
        wedge.start()
        return wedge
    except (CardReaderError, ValueError) as exc:
        raise StartupError(f"{loaded.where('card_reader')}: card_reader: {exc}") from None


def _recogniser(loaded: LoadedConfig, menu: Menu, *, check_only: bool) -> Recogniser:
    model = loaded.config.model
    if isinstance(model, GroundTruthModelConfig):
        return _ground_truth_recogniser(loaded, menu, loaded.resolve(model.dataset))
    assert isinstance(model, BundleModelConfig)
    source = loaded.resolve(model.path)
    try:
        bundle = verify_bundle(source)
        if check_only:
            return BundleRecogniser(bundle, threads=model.threads)
        store = BundleStore(loaded.resolve(model.store))
        if bundle.version not in store.versions():
            store.install(source)
        recogniser = SwappableRecogniser(store, threads=model.threads)
    except BundleError as exc:
        raise StartupError(f"{loaded.where('model', 'path')}: model.path: {exc}") from None
    not_on_menu = sorted(set(recogniser.active.gallery.dishes()) - {item.id for item in menu})
    if not_on_menu:
        logger.warning("dishes the model knows but today's menu lacks: %s", ", ".join(not_on_menu))
    return recogniser


def _replay_truth(loaded: LoadedConfig, menu: Menu) -> GroundTruthRecogniser | None:
    """The labels beside replayed photos: the demo weighs and fixes trays by them."""
    camera = loaded.config.camera
    if not isinstance(camera, ReplayCameraConfig):
        return None
    dataset = loaded.resolve(camera.folder).parent / "dataset.yaml"
    if not dataset.is_file():
        return None
    return _ground_truth_recogniser(loaded, menu, dataset)


def _ground_truth_recogniser(
    loaded: LoadedConfig, menu: Menu, dataset: Path
) -> GroundTruthRecogniser:
    try:
        names = read_class_names(dataset)
    except LabelError as exc:
        raise StartupError(f"{loaded.where('model', 'dataset')}: model.dataset: {exc}") from None
    by_class = menu.by_dataset_class()
    class_to_dish = {i: by_class[name].id for i, name in enumerate(names) if name in by_class}
    missing = [name for name in names if name not in by_class]
    if missing:
        logger.warning("dataset classes not on the menu (shown as unknown): %s", ", ".join(missing))
    return GroundTruthRecogniser(class_to_dish)


def seed_demo_ledger(ledger: EmbeddedLedger, cards: list[str]) -> None:
    """Open the demo diners' accounts and keep them in credit, so the demo can run for ever."""
    for index, card_id in enumerate(cards):
        account_id, name = DEMO_ACCOUNTS.get(card_id, (f"E{2001 + index}", f"演示用户{index + 1}"))
        ledger.create_account(account_id, name)
        ledger.add_card(card_id, account_id)
        account = ledger.account(account_id)
        if account is not None and account.balance_fen < DEMO_MIN_BALANCE_FEN:
            ledger.top_up(account_id, DEMO_TOP_UP_FEN)
