"""What the screens show of the checkout, kept from the session's events.

The session keeps the truth; a screen keeps only what it draws. The diner and cashier screens
both draw the same four things (the state, the recognition, the priced tray and the holds) and
follow the events the same way, with :meth:`ShownTray.follow`; each adds what only it shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from terminal.core.holds import Hold
from terminal.core.pricing import PricedTray
from terminal.core.session import (
    CheckoutEvent,
    CheckoutState,
    CheckoutVoided,
    Paid,
    PaymentRequested,
    StateChanged,
    TrayHeld,
    TrayRecognised,
    TrayRemoved,
)
from vision.types import TrayRecognition


@dataclass
class ShownTray:
    """The tray on the scanner as a screen shows it.

    Attributes:
        state: the checkout's state.
        recognition: the dishes recognised, None before recognition and after the tray left.
        priced: the priced tray, None until priced and after the tray left.
        holds: why the tray waits for the cashier; empty once it may be paid or was voided.
    """

    state: CheckoutState
    recognition: TrayRecognition | None = None
    priced: PricedTray | None = None
    holds: tuple[Hold, ...] = ()

    def follow(self, event: CheckoutEvent) -> None:
        """Take in one session event."""
        if isinstance(event, StateChanged):
            self.state = event.current
        elif isinstance(event, TrayRecognised):
            self.recognition = event.recognition
            self.priced = event.priced
        elif isinstance(event, TrayHeld):
            self.holds = event.holds
            self.priced = event.priced or self.priced
        elif isinstance(event, PaymentRequested):
            self.priced = event.priced
            self.holds = ()
        elif isinstance(event, Paid):
            self.priced = event.priced
        elif isinstance(event, CheckoutVoided):
            self.holds = ()
        elif isinstance(event, TrayRemoved):
            self.recognition = None
            self.priced = None
            self.holds = ()


__all__ = ["ShownTray"]
