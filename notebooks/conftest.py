"""`pytest --nbmake notebooks` (part of `make test`): every chapter runs top to bottom at the `smoke` profile.

A chapter's kernel inherits the environment its test sets up here: the profile defaults to
`smoke` (`WORKBENCH_PROFILE` wins when set), downloads stay off, one intra-op thread per kernel,
and what the chapters train and cache goes to one fresh temporary `WORKBENCH_CACHE` shared by
the session's chapters and removed at the end (unless one is set), so a test never reloads a
stale run of another version of the code. The variables are restored after each notebook.
`tests/test_notebooks.py` checks the committed files themselves (outputs stripped, the chapter
skeleton, imports from `workbench` only).
"""
import os
import shutil
import tempfile

_cache = {"dir": None}
_saved: dict[str, str | None] = {}


def _defaults() -> dict[str, str]:
    if _cache["dir"] is None and "WORKBENCH_CACHE" not in os.environ:
        _cache["dir"] = tempfile.mkdtemp(prefix="workbench-notebooks-")
    return {"WORKBENCH_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            "OMP_NUM_THREADS": "1", "WORKBENCH_CACHE": _cache["dir"] or os.environ["WORKBENCH_CACHE"]}


def pytest_runtest_setup(item):
    for name, value in _defaults().items():
        _saved[name] = os.environ.get(name)
        os.environ.setdefault(name, value)


def pytest_runtest_teardown(item):
    for name, value in _saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_sessionfinish(session):
    if _cache["dir"]:
        shutil.rmtree(_cache["dir"], ignore_errors=True)
