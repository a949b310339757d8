"""Typed access to the running PadaApp for screens and widgets.

Textual types `node.app` as `App[object]`, so reaching the app's own members (read, write,
start_job, ...) needs a cast; it lives here once instead of a `type: ignore` at every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen

if TYPE_CHECKING:  # app.py imports the screens; only the type checker needs this direction
    from .app import PadaApp


def pada_app(node: DOMNode) -> PadaApp:
    """The PadaApp a mounted screen or widget belongs to."""
    return cast("PadaApp", node.app)


class PadaScreen(Screen[None]):
    """A full screen of the pada-local app."""

    @property
    def pada(self) -> PadaApp:
        return pada_app(self)


class PadaModal(ModalScreen[None]):
    """A dialog of the pada-local app that uses the app's own members."""

    @property
    def pada(self) -> PadaApp:
        return pada_app(self)
