"""The tour's text panel: the step's title and a few sentences for a teacher to read out, and the keys that move.

Beside the app on a wide terminal (the ``-tour-side`` class the tour app sets on its screen), above it otherwise.
Its text is the tour's own (``tui/tour.py``); nothing from a file or a model is read as markup here."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .render import DIM

KEYS_TEXT = "pgdn or >   next step\npgup or <   back\nctrl+q      quit"


class TourPanel(Static, can_focus=True):
    """Focusable so that the focus has somewhere to be when the why panel hides the top-k list (else closing a modal
    hands it to the first focusable widget, the graph editor, and the next keys type into it)."""

    DEFAULT_CSS = """
    TourPanel {
        height: auto;
        max-height: 8;
        border: heavy $accent;
        border-title-style: bold;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        padding: 0 1;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
    }
    """
    # where it goes depends on the screen's size (classes the tour app sets): app CSS, not scoped to the widget
    SCREEN_CSS = """
    Screen.-tall TourPanel { max-height: 14; }
    Screen.-tour-compact TourPanel { max-height: 5; }
    Screen.-tour-compact Header { display: none; }
    Screen.-tour-compact #story { display: none; }
    Screen.-tour-compact #attention { display: none; }  /* the model beside it gets the side column */
    Screen.-tour-side TourPanel {
        dock: right;
        width: 40;
        height: 1fr;
        max-height: 100%;
        margin: 1 0 1 0;  /* below the header, above the footer */
        padding: 1 1;
    }
    Screen.-tour-side.-wide TourPanel { width: 50; padding: 1 2; }
    /* a tiny terminal (40x10): one line, the step's name; the app's own short layout below it */
    Screen.-tour-tiny TourPanel { border: none; height: 1; max-height: 1; padding: 0 1; background: $accent 40%; }
    Screen.-tour-tiny #story { display: block; }
    """

    def show_step(self, index: int, count: int, title: str, body: Text, missing: list[str], mode: str = "full") -> None:
        """Step ``index`` (from 0) of ``count``. ``mode`` "full": the title as a heading, the text, the keys at the
        foot; "compact": the text (the step's lead), the title and the keys in the border; "tiny": one line."""
        self.border_title = f"tour {index + 1}/{count}" + (f" · {title}" if mode == "compact" else "")
        self.border_subtitle = "pgdn > next · pgup < back"
        t = Text()
        if mode == "tiny":
            t.append(f"tour {index + 1}/{count} · {title}", style="bold")
            t.append(" · pgdn/pgup" + (" · models missing" if missing else ""))
            self.update(t)
            return
        if mode == "full":
            t.append(title + "\n\n", style="bold underline")
        if missing:
            t.append("This step needs " + ", ".join(missing) + ", not found (the shipped models/ folder). "
                     "The app shows what is loaded.\n\n", style="bold red")
        t.append_text(body)
        if mode == "full":
            t.append("\n\n")
            t.append(KEYS_TEXT, style=DIM)
        self.update(t)
