"""Work-arounds for the Textual version the app runs on, applied once when the app is imported.

* ``OptionList._move_page`` (pagedown/pageup in any option list: the top-k list, the command palette's list) reads
  the list's laid-out lines; a list the terminal is too small to show (40×10) has none yet and it raised
  ``KeyError: 0``, which ended the app. There a page is the whole list: the first or the last option.
* ``Screen.dismiss`` of a screen already off the stack (two quick enters in the command palette: the second one
  reaches the palette after the first closed it) popped the screen below it, the app's own, and raised
  ``ScreenStackError``. A screen no longer on the stack is dismissed once only: the second call does nothing.
"""

from __future__ import annotations

from textual.await_complete import AwaitComplete
from textual.screen import Screen
from textual.widgets import OptionList


def _patch_move_page() -> None:
    move_page = OptionList._move_page
    if getattr(move_page, "_ntp_probe_safe", False):
        return

    def safe_move_page(self: OptionList, direction) -> None:
        try:
            move_page(self, direction)
        except (KeyError, IndexError):
            if self.option_count:
                self.highlighted = self.option_count - 1 if direction > 0 else 0

    safe_move_page._ntp_probe_safe = True  # type: ignore[attr-defined]
    OptionList._move_page = safe_move_page  # type: ignore[method-assign]


def _patch_dismiss() -> None:
    dismiss = Screen.dismiss
    if getattr(dismiss, "_ntp_probe_safe", False):
        return

    def safe_dismiss(self: Screen, result=None):
        if self.is_attached and self not in self.app.screen_stack:  # dismissed already
            return AwaitComplete()
        return dismiss(self, result)

    safe_dismiss._ntp_probe_safe = True  # type: ignore[attr-defined]
    Screen.dismiss = safe_dismiss  # type: ignore[method-assign]


_patch_move_page()
_patch_dismiss()
