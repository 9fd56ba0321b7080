"""The kiosk screens: the diner screen, the cashier screen and the maintenance screen.

The only package of trayscan that imports PySide6 (``tests/test_import_boundaries.py`` keeps it
so). The screens follow the napari pattern: the checkout session is a plain-Python model that
emits events, each screen takes it in its constructor and subscribes, and no screen holds
business state. Everything slow (recognition, device I/O, payments, posting) runs on a worker
thread (:mod:`terminal.ui.worker`); results reach the screens through queued signals.

Modules without Qt (:mod:`terminal.ui.text`, :mod:`terminal.ui.pinyin`,
:mod:`terminal.ui.thumbnails`, :mod:`terminal.ui.status`, :mod:`terminal.ui.drivers`,
:mod:`terminal.ui.tray`, :mod:`terminal.ui.face`) hold the logic the screens show, so it can be
tested and reused without a display.
"""
