"""The chapter notebooks as committed files: stripped, one skeleton, the package's imports only.

Running them is nbmake's job (`make test` runs `pytest --nbmake notebooks` at the `smoke`
profile, see `notebooks/conftest.py`); these tests read the files. A notebook saved from
JupyterLab with its outputs fails here until it is stripped: `nbstripout notebooks/*.ipynb`
(or once, `nbstripout --install` in the clone, which strips on every commit).
"""
import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ("00_tour", "01_image_language_models", "02_frozen_features", "03_adapted_features", "04_retrieval",
            "05_action_recognition", "06_temporal_grounding", "07_spatiotemporal_grounding", "08_video_qa",
            "09_captioning", "10_experimental_analysis", "11_your_own_videos")
# What a chapter may import besides `workbench`: the widgets and display of the notebook itself,
# and a few standard-library modules; everything else comes through the package.
ALLOWED_IMPORTS = {"workbench", "ipywidgets", "IPython", "os", "time", "json", "csv", "pathlib"}
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def test_every_chapter_is_there():
    assert [p.stem for p in NOTEBOOKS] == list(CHAPTERS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = _read(path)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs or execution counts; run `nbstripout {path}`"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state; run `nbstripout {path}`"
    stray = [i for i, c in enumerate(nb.cells) if set(c.metadata) - {"tags"}]
    assert not stray, f"{path.name}: cells {stray} carry editor metadata; run `nbstripout {path}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_skeleton(path):
    """Title, what you will learn, runtime per profile; one parameters cell; a computed
    conclusion; references (STYLE.md item 7)."""
    cells = _read(path).cells
    first = cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), path.name
    assert "What you will learn" in first.source and "**Runtime**" in first.source, path.name
    for profile in ("`smoke`", "`cpu`", "`gpu`"):
        assert profile in first.source, f"{path.name}: no runtime stated for {profile}"
    parameters = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1, f"{path.name}: {len(parameters)} parameters cells"
    assert 'PROFILE = os.environ.get("WORKBENCH_PROFILE", "cpu")' in parameters[0].source
    heading = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("## Conclusion")]
    assert len(heading) == 1, f"{path.name}: one conclusion section expected"
    conclusion = cells[heading[0] + 1]
    assert conclusion.cell_type == "code" and "print(" in conclusion.source, \
        f"{path.name}: the conclusion is computed and printed, not typed"
    assert cells[-1].cell_type == "markdown" and cells[-1].source.startswith("## References"), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_imports_the_package_only(path):
    for cell in _read(path).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] in ALLOWED_IMPORTS, f"{path.name} imports {name}: use the package"


def test_chapters_have_interactive_controls():
    """Every chapter wires ipywidgets controls to a view (`workbench.widgets.live`)."""
    for path in NOTEBOOKS:
        source = "\n".join(c.source for c in _read(path).cells if c.cell_type == "code")
        assert re.search(r"^live\(", source, re.M), f"{path.name}: no interactive view"


def test_readme_lists_every_chapter_and_the_commands():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Chapters", 1)[1].split("\n## ", 1)[0]
    for stem in CHAPTERS:
        assert f"`{stem}`" in section, f"README's Chapters section does not list {stem}"
    assert "make lab" in section and "WORKBENCH_PROFILE=" in section


def test_makefile_runs_the_chapters_in_make_test_and_opens_them_in_lab():
    makefile = (ROOT / "Makefile").read_text()
    test_recipe = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert "--nbmake" in test_recipe and "notebooks" in test_recipe
    lab_recipe = makefile.split("\nlab: ", 1)[1].split("\n\n", 1)[0]
    assert "jupyter lab" in lab_recipe and "--notebook-dir=notebooks" in lab_recipe
