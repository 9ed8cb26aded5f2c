"""llmc in Jupyter: a notebook executed by nbconvert in a real IPython kernel.

In a kernel, cells run inside a running event loop, so the ``_sync`` entry points take their
worker-thread path, and rich display goes through ``_repr_html_`` / ``_repr_svg_``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (the dev extra)")
nbconvert = pytest.importorskip("nbconvert", reason="nbconvert is not installed (the dev extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (the dev extra)")

REPO = Path(__file__).resolve().parents[1]
# the kernel's start and the notebook, with the ExecutePreprocessor's own limit per cell
pytestmark = pytest.mark.timeout(300)

SETUP = '''
import asyncio, warnings
warnings.simplefilter("error", RuntimeWarning)  # "coroutine ... was never awaited" is one
import llmc
from llmc.testing import ScriptedOpenAIServer

@llmc.tool
async def search(query: str) -> str:
    """Search the encyclopedia.

    Args:
        query: a topic.
    """
    await asyncio.sleep(0.05)
    return {"Mariana Trench": "10994 m", "Puerto Rico Trench": "8376 m"}[query]

PLAN = '1. search("Mariana Trench")\\n2. search("Puerto Rico Trench")\\njoin()'
FINISH = "Action: Finish(The Mariana Trench.)"
server = ScriptedOpenAIServer([PLAN, FINISH, PLAN, FINISH]).start()
compiler = llmc.Compiler([search], llmc.OpenAI("gpt-4o-mini", base_url=server.base_url))
asyncio.get_running_loop()  # cells run inside the kernel's event loop
print(llmc.__file__)
'''

CELLS = [
    SETUP,
    'answer = compiler.run_sync("Which trench is deeper?")\nanswer',
    'again = await compiler.run("Which trench is deeper?")\nagain.trace',
    "result = llmc.run_plan_sync(llmc.Plan.parse(PLAN, tools=[search]))\nresult",
    "print(answer.text, result.outputs, llmc.viz.__name__)",
    "server.close()\nimport gc\ngc.collect()",
]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> list[list[dict[str, Any]]]:
    from nbconvert.preprocessors import ExecutePreprocessor

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    folder = tmp_path_factory.mktemp("notebook")
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    # errors stay in the cells' outputs, for the tests below to name
    processor = ExecutePreprocessor(timeout=120, kernel_name="python3", allow_errors=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", path)  # the kernel imports this checkout's llmc
        processor.preprocess(notebook, {"metadata": {"path": str(folder)}})
    nbformat.write(notebook, folder / "executed.ipynb")
    return [list(cell.get("outputs", [])) for cell in notebook.cells]


def texts(cell: list[dict[str, Any]], name: str) -> str:
    return "".join(o.get("text", "") for o in cell if o.get("name") == name)


def shown(cell: list[dict[str, Any]]) -> dict[str, str]:
    """The display data of a cell's result: MIME type -> content."""
    (result,) = [o for o in cell if o["output_type"] == "execute_result"]
    return dict(result["data"])


def test_the_kernel_runs_this_checkouts_llmc(outputs: list[list[dict[str, Any]]]) -> None:
    assert texts(outputs[0], "stdout").strip().startswith(str(REPO / "llmc"))


def test_run_sync_works_in_a_running_loop_and_the_answer_shows_as_pictures(
    outputs: list[list[dict[str, Any]]],
) -> None:
    data = shown(outputs[1])
    assert data["text/plain"].startswith("<Answer 'The Mariana Trench.': 1 plan, 2 tasks")
    assert data["text/html"].startswith("<p>The Mariana Trench.</p>")
    assert data["text/html"].count("<svg") == 2  # the plan after the run, and the timeline


@pytest.mark.parametrize(
    ("cell", "kind"),
    [(2, "Trace"), (3, "Result")],
    ids=["await", "run_plan_sync"],
)
def test_await_and_run_plan_sync_work_and_a_trace_and_a_result_show_as_timelines(
    outputs: list[list[dict[str, Any]]], cell: int, kind: str
) -> None:
    data = shown(outputs[cell])
    assert data["text/plain"].startswith(f"<{kind} ") and "2 done" in data["text/plain"]
    assert data["image/svg+xml"].lstrip().startswith("<svg")


def test_the_answer_and_the_result_hold_what_the_runs_found(
    outputs: list[list[dict[str, Any]]],
) -> None:
    assert texts(outputs[4], "stdout").strip() == (
        "The Mariana Trench. {1: '10994 m', 2: '8376 m'} llmc.viz"
    )


def test_nothing_was_left_unawaited(outputs: list[list[dict[str, Any]]]) -> None:
    errors = [o for cell in outputs for o in cell if o["output_type"] == "error"]
    assert not errors
    stderr = "".join(texts(cell, "stderr") for cell in outputs)
    assert "never awaited" not in stderr and "Warning" not in stderr
