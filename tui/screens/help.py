"""The help screen: what each screen is for and its keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# pada-local

Improve a small model on your task: each round evaluates the student, mines
*failure patterns* on validation data, generates samples aimed at them, checks
them and retrains. Everything lands in the run store shown in the title bar.

## Everywhere
| key | |
|---|---|
| `?` / `F1` | this help |
| `l` | progress of the running job |
| `escape` | back |
| `q` | quit (asks first while a job runs) |

## Runs
| key | |
|---|---|
| `enter` | open the run |
| `n` | new run (a form, validated as you type) |
| `r` | resume a cancelled, interrupted or failed run |
| `d` | delete a run (asks first) |
| `space`, `c` | mark runs, then compare them; `C` a stored comparison |
| `s`, click a header | sort; `/` filter |

## A run
`p` patterns, `s` samples, `e` export, `r` resume; tabs show the rounds,
charts (score per round, training loss), the config and artifacts.

## Patterns
Each failure pattern of a round, with its strategy, the analyses and the
validation failures behind it and whether they were fixed by the round's
training. Validation items are shown to you only; they never reach
generation or training. `[` `]` change round, `s` the pattern's samples.

## Samples
Filter by round, pattern and verdict. `a` accept, `x` reject, `u` undo yours:
your verdict overrides quality control for rounds trained afterwards.

## New run / progress
`ctrl+s` start, `ctrl+t` check data and models. The run goes on in the
background; `c` on the progress screen cancels it cleanly (finished stages
are kept, `r` resumes).
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Markdown(HELP)
