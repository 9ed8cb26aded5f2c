"""The llmc command: list tools, check plans, run plans with real tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmc.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "plans" / "compare_docs.plan"


@pytest.fixture
def docs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("llmc runs plans. llmc is fast.\n")
    (tmp_path / "docs" / "plan-language.md").write_text(" ".join(["word"] * 20) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMC_FILES_ROOT", raising=False)
    return tmp_path


def test_tools_lists_signatures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "text"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("text:\n  word_count(text: str) -> int")


def test_check_shows_levels(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "6 tasks on 3 levels, at most 3 at once" in out
    assert "level 2: $3 word_count, $4 word_count, $5 top_words" in out


def test_exec_runs_the_example_with_real_tools(
    docs_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["exec", str(EXAMPLE), "--json"]) == 0
    captured = capsys.readouterr()
    outputs = json.loads(captured.out)
    assert outputs["3"] == 6 and outputs["4"] == 20  # numbers stay numbers
    assert outputs["5"] == {"llmc": 2, "runs": 1, "plans": 1, "fast": 1}
    assert outputs["6"] == pytest.approx((20 - 6) / 6 * 100)
    assert outputs["1"].startswith("llmc runs plans.")
    assert "started  $1 read_file" in captured.err
    assert "run took" in captured.err


def test_exec_reports_a_failed_task_and_exits_1(
    docs_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (docs_root / "docs" / "plan-language.md").unlink()
    assert main(["exec", str(EXAMPLE)]) == 1
    captured = capsys.readouterr()
    assert "FAILED   $2 read_file" in captured.err
    assert "skipped  $4 word_count" in captured.err
    assert "$3 = 6" in captured.out


@pytest.mark.parametrize(
    ("plan", "words"),
    [
        ('1. read_file("a")\n2. nope($1)\n', "unknown tool 'nope'"),
        ("1. read_file(path)\n", "line 1, column 14"),
    ],
)
def test_bad_plans_exit_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plan: str, words: str
) -> None:
    path = tmp_path / "bad.plan"
    path.write_text(plan)
    assert main(["check", str(path)]) == 2
    assert words in capsys.readouterr().err


def test_missing_plan_file_exits_2_and_says_what_plan_may_be(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "/nonexistent/plan.txt"]) == 2
    err = capsys.readouterr().err
    assert "no plan file '/nonexistent/plan.txt'" in err
    assert "plan text in quotes" in err and "- for standard input" in err


def test_plan_text_is_accepted_in_place_of_a_file(
    docs_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["exec", '1. word_count("a b c")\n2. math("n * 2", {"n": $1})', "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"1": 3, "2": 6}
    plan = '{"tasks": [{"id": 1, "tool": "word_count", "args": ["a b"]}]}'
    assert main(["check", plan]) == 0
    assert "1 tasks on 1 levels" in capsys.readouterr().out


def test_exec_json_gives_the_error_text_of_a_task_without_output(
    docs_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["exec", '1. math("1 / 0")\n2. math("$1 + 1")', "--json"]) == 1
    outputs = json.loads(capsys.readouterr().out)
    assert outputs["1"].startswith("Error: MathError") and "division by zero" in outputs["1"]
    assert outputs["2"].startswith("Error: DependencyError")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import llmc

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"llmc {llmc.__version__}"


@pytest.mark.parametrize("command", [["exec", "p.plan"], ["run", "q"], ["tools"], ["viz", "p"]])
def test_a_wrong_flag_shows_the_subcommands_usage(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*command, "--no-such-flag"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: llmc {command[0]} ")
    assert "unrecognized arguments: --no-such-flag" in err


@pytest.mark.parametrize(
    ("command", "flag", "value", "says"),
    [
        (["exec", "1. word_count('a b')"], "--max-concurrency", "0", "must be at least 1, got 0"),
        (["exec", "1. word_count('a b')"], "--max-concurrency", "x", "must be a whole number"),
        (
            ["exec", "1. word_count('a b')"],
            "--timeout",
            "-1",
            "must be a positive number of seconds",
        ),
        (
            ["exec", "1. word_count('a b')"],
            "--timeout",
            "nan",
            "must be a positive number of seconds",
        ),
        (["run", "q"], "--concurrency", "0", "must be at least 1, got 0"),
        (["run", "q"], "--max-replans", "-1", "must be at least 0, got -1"),
        (["run", "q"], "--timeout", "0", "must be a positive number of seconds"),
    ],
)
def test_a_bad_number_is_a_usage_error_before_anything_runs(
    capsys: pytest.CaptureFixture[str], command: list[str], flag: str, value: str, says: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        main([*command, flag, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: {says}" in err and "Traceback" not in err


def test_tools_of_an_unknown_pack_prints_only_the_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["tools", "text", "nosuchpack"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no tool pack named 'nosuchpack'" in captured.err


def test_user_tool_pack_by_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = tmp_path / "mine.py"
    pack.write_text(
        "import llmc\n\n@llmc.tool\ndef double(x: int) -> int:\n"
        "    '''Double x.'''\n    return 2 * x\n"
    )
    plan = tmp_path / "p.plan"
    plan.write_text("1. double(21)\n2. double($1)\njoin()\n")
    assert main(["exec", str(plan), "--tools", str(pack)]) == 0
    assert "$2 = 84" in capsys.readouterr().out


RUN_PLAN = """Thought: read both at once.
1. read_file("README.md")
2. read_file("docs/plan-language.md")
3. word_count($1)
4. word_count($2)
join()
<END_OF_PLAN>"""


def test_run_answers_over_http_and_draws_the_run(
    docs_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmc.testing import ScriptedOpenAIServer

    finish = "Thought: 20 > 6.\nAction: Finish(docs/plan-language.md has more words (20 vs 6).)"
    with ScriptedOpenAIServer([RUN_PLAN, finish], chunk_size=7) as server:
        status = main(
            [
                "run",
                "Which file has more words?",
                "--model",
                "scripted",
                "--base-url",
                server.base_url,
                "--tools",
                "files",
                "text",
                "--svg",
                str(docs_root / "pics"),
            ]
        )
        planner_request = server.requests[0].body
    assert status == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "docs/plan-language.md has more words (20 vs 6)."
    assert '1. read_file("README.md")' in captured.err  # the plan streamed to the terminal
    assert "done     $4 word_count" in captured.err
    assert "answered in" in captured.err and "2 LLM calls" in captured.err
    assert (docs_root / "pics" / "plan.svg").read_text().startswith("<svg")
    timeline = (docs_root / "pics" / "timeline.svg").read_text()
    assert timeline.count('class="row row-task"') == 4  # one row per task
    assert timeline.count('class="row row-span"') == 2  # the planner and the joiner
    assert "read_file(path: str" in planner_request["messages"][0]["content"]


def test_run_without_a_model_says_how_to_configure_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "LLMC_MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("llmc.cli.default_llm", _no_default_llm)
    assert main(["run", "anything"]) == 2
    assert "OPENAI_BASE_URL" in capsys.readouterr().err


def _no_default_llm() -> None:
    from llmc.errors import LLMError

    raise LLMError("no LLM is configured: set OPENAI_MODEL and OPENAI_BASE_URL")
