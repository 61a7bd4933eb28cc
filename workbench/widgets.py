"""Interactive controls for the notebooks: ipywidgets wired to a view that redraws in place.

``live(view, strategy=Dropdown(...), query=Text(...))`` displays the controls in one row and,
below them, what ``view(strategy=..., query=...)`` returns (a plotly figure, a ``Markdown``, or a
list of them); whenever a control changes, the view is called again and each output is updated
in place (IPython display handles). The first call happens at once and its errors are raised, so
a notebook run headless (nbmake, CI) fails on a broken view.

Why not ``ipywidgets.interactive`` or an ``Output`` widget: headless execution (nbclient, which
nbmake runs) intermittently blocks on a cell that writes into an ``Output`` widget until the cell
times out (jupyter/nbclient#312, measured here: about one such cell in ten); display handles
need no widget for the outputs, so that path is never taken.
"""
from __future__ import annotations

import html
from typing import Callable

import ipywidgets as widgets
from IPython.display import Markdown, display


def _as_list(shown) -> list:
    return list(shown) if isinstance(shown, (list, tuple)) else [shown]


def live(view: Callable[..., object], **controls: widgets.ValueWidget) -> None:
    """Display ``controls`` and ``view(**{name: control.value})``'s outputs, redrawn in place on
    every change. ``view`` returns the same number of displayable objects every time."""
    def values() -> dict:
        return {name: control.value for name, control in controls.items()}

    first = _as_list(view(**values()))
    display(widgets.HBox(list(controls.values())))
    handles = [display(item, display_id=True) for item in first]

    def redraw(change) -> None:
        try:
            shown = _as_list(view(**values()))
            if len(shown) != len(handles):
                raise ValueError(f"the view returned {len(shown)} outputs, {len(handles)} expected")
        except Exception as error:   # a callback's traceback would go to the log, not the page
            handles[0].update(Markdown(f"**{type(error).__name__}**: {html.escape(str(error))}"))
            return
        for handle, item in zip(handles, shown):
            handle.update(item)

    for control in controls.values():
        control.observe(redraw, names="value")
