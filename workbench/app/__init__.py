"""The Gradio app (`workbench app`): live retrieval, a strategy lab and the loaded ILFM (DESIGN §8).

Layout and wiring live in :mod:`workbench.app.ui`; everything an event does is a plain function
(:mod:`workbench.app.handlers`, the task modules) over an :class:`~workbench.app.state.AppState`
(the ILFM, the indexed :mod:`~workbench.app.collection`, strategies made on demand).
"""
