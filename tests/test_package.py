"""A non-editable install into a fresh virtual environment finds llmc's catalogs."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

import llmc
from llmc import catalog

REPO = Path(__file__).resolve().parent.parent

CHECK = textwrap.dedent(
    """
    import json, llmc
    from llmc import catalog
    tools = catalog.load_pack("text")
    print(json.dumps({
        "module": llmc.__file__,
        "tools_dir": str(catalog.catalog_dir("tools")),
        "packs": catalog.tool_packs(),
        "planner": sorted(p.name for p in catalog.planner_dir().iterdir()),
        "first_tool": tools[0].signature_line(),
    }))
    """
)


@pytest.mark.timeout(600)
def test_wheel_install_in_fresh_venv_finds_planners_and_tools(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # The dependencies come from this environment through a .pth file, whose paths go after
    # the venv's own site-packages: llmc itself is found in the fresh install only.
    site_dir = next((env_dir / "lib").glob("python3*/site-packages"))
    (site_dir / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            str(REPO),
        ],
        check=True,
        cwd=tmp_path,
    )
    result = subprocess.run(
        [str(python), "-c", CHECK],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository, whose llmc/ would shadow the install
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    found = json.loads(result.stdout)
    assert found["module"].startswith(str(env_dir)), found["module"]
    assert found["tools_dir"].startswith(str(env_dir))
    assert {"files", "math", "text"} <= set(found["packs"])
    assert {"planner.jinja", "joiner.jinja", "exemplars.txt"} <= set(found["planner"])
    assert found["first_tool"].startswith("word_count(")
    assert (env_dir / "bin" / "llmc").exists()


def test_catalog_in_the_source_tree() -> None:
    assert catalog.catalog_dir("tools").is_dir()
    assert {"files", "math", "text"} <= set(catalog.tool_packs())
    assert catalog.pack_path("math").name == "math.py"
    with pytest.raises(llmc.ToolLoadError, match=r"ready-made packs: .*files"):
        catalog.pack_path("nope")
    with pytest.raises(FileNotFoundError, match="llmc has: default"):
        catalog.planner_dir("nope")
