"""The aids for small models: argument choices and question spans in plan grammars, the
repeat rule and vetoes, joiner modes and copied answers, brief prompts, and what ``llmc run``
shows while it works.

Grammar texts are checked as text and, where the model is installed, by llama.cpp's own
grammar engine (which texts it admits); compiler runs use scripted LLMs over real tools.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_grammar import admits

import llmc
from llmc.compiler import Compiler
from llmc.errors import ToolDefinitionError
from llmc.grammar import (
    MAX_CHOICES,
    QUESTION_SPANS,
    SMALL_MODEL_PLANS,
    PlanGrammar,
    Word,
    answer_form,
    focus,
    focused_value,
    joiner_grammar,
    named_choices,
    plan_grammar,
    resolve_choices,
    span_grammar,
)
from llmc.joiner import Joiner
from llmc.llm import Local
from llmc.planner import Planner, PlanStream
from llmc.progress import Progress, phase_times
from llmc.testing import ScriptedLLM
from llmc.trace import Span, TaskRecord, TaskStatus, Trace
from llmc.viz import timeline_svg

REPO = Path(__file__).resolve().parents[1]
FILES = ["notes/a.txt", "b.md"]


@llmc.tool(choices={"path": lambda: FILES, "mode": ["fast", "slow"]})
def read(path: str, mode: str = "fast") -> str:
    """Read a file."""
    return f"text of {path}"


@llmc.tool(choices={"pattern": QUESTION_SPANS})
def find(pattern: str) -> str:
    """Find a pattern."""
    return f"found {pattern}"


@llmc.tool
def length(river: str) -> str:
    """The length of a river in km."""
    return {"Nile": "6650", "Amazon": "6400"}.get(river, "unknown")


# -- choices -----------------------------------------------------------------------------------


def test_choices_are_the_only_values_a_parameter_may_take_besides_a_reference() -> None:
    grammar = plan_grammar([read], max_tasks=2)
    assert 'choice-0-path ::= "\\"notes/a.txt\\"" | "\\"b.md\\""' in grammar
    assert 'choice-0-mode ::= "\\"fast\\"" | "\\"slow\\""' in grammar
    assert "(choice-0-path | ref-1)" in grammar  # task 2 may still pass task 1's output
    assert "choice-0-path" not in plan_grammar([read], choices=False)


def test_without_references_no_task_may_write_a_dollar_reference() -> None:
    grammar = plan_grammar([length], max_tasks=3, references=False)
    for task_id in (1, 2, 3):  # every task calls with literals only (level 0)
        assert f'task-{task_id} ::= "{task_id}. " call-0 ' in grammar
    assert "end-3 ::=" in grammar and "ref-2" in grammar  # finish() still reads outputs


def test_question_spans_are_runs_of_the_questions_words() -> None:
    grammar = plan_grammar([find], question='Who said "hi"?')
    assert '"\\\\\\"" ' in grammar or '\\\\\\"' in grammar  # a quote in a span is escaped
    free = plan_grammar([find])  # without the question the parameter is a free string
    assert "choice-0-pattern" not in free


def test_resolve_choices_lists_removes_duplicates_and_gives_up_on_too_many() -> None:
    assert resolve_choices(["a", "b", "a"]) == ["a", "b"]
    assert resolve_choices(lambda: iter([1, 2])) == [1, 2]
    assert resolve_choices([]) is None
    assert resolve_choices(range(MAX_CHOICES + 1)) is None
    assert resolve_choices(QUESTION_SPANS) is QUESTION_SPANS


def test_choices_must_name_parameters_and_reach_the_json_schema() -> None:
    def show(path: str) -> str:
        return path

    with pytest.raises(ToolDefinitionError, match="choices name colour"):
        llmc.tool(choices={"colour": ["red"]})(show)
    parameters = read.json_schema()["function"]["parameters"]["properties"]
    assert parameters["path"]["enum"] == FILES
    assert "enum" not in find.json_schema()["function"]["parameters"]["properties"]["pattern"]


def test_the_files_pack_offers_the_files_under_its_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMC_FILES_ROOT", str(REPO / "tests/data/files"))
    tools = llmc.Toolbox.from_path(REPO / "tools/files.py")
    grammar = plan_grammar(tools, question="Which file mentions Saturn?")
    assert '"\\"notes/todo.md\\""' in grammar and '"\\"planets.txt\\""' in grammar
    assert '"\\"*.csv\\""' in grammar  # list_files patterns: one per extension
    assert '"Saturn"' in grammar  # grep's pattern: words of the question


# -- spans and focus ---------------------------------------------------------------------------


def test_span_grammar_starts_with_no_question_word_and_no_punctuation() -> None:
    rules = span_grammar(["Venus is the hottest planet."], not_starting=["the", "hottest"])
    start = rules.splitlines()[0]
    assert start == "span ::= span-0-0 | span-0-1 | span-0-4"  # Venus, is, planet


def test_a_span_starts_with_no_form_of_a_question_word() -> None:
    rules = span_grammar(["Thank you, Attending."], not_starting=["thanks", "attends"])
    start = rules.splitlines()[0]  # "Thank" shares "thank" with "thanks", "Attending" "atten"
    assert start == "span ::= span-0-1"  # you


MEETING = "The meeting is on Tuesday at 10:00 in room 4.\nAnna, Ben and Chloe will attend."


def starts(rules: str) -> list[str]:
    """The words a span grammar lets a copied answer start with."""
    pieces = {line.split(" ::= ")[0]: line.split(" ::= ")[1] for line in rules.splitlines()}
    first = rules.splitlines()[0].split(" ::= ")[1]
    return [pieces[rule].split(" ")[0].strip('"') for rule in first.split(" | ")]


@pytest.mark.parametrize(
    ("question", "kept"),
    [
        ("How many eggs does it use?", ["10", "00", "4"]),
        ("What is the sum of the lengths?", ["10", "00", "4"]),
        ("At what time is the meeting?", ["10", "00", "4"]),
        ("On which day is the meeting?", ["Tuesday"]),
        ("Who attends the meeting?", ["Anna", "Ben", "Chloe"]),
        ("In which room is the meeting?", ["4"]),  # the word after the noun asked for
        ("Which person leads it?", ["Anna", "Ben", "Chloe"]),  # no "person": a name
        ("What colour is the room?", ["The", "meeting", "is"]),  # says nothing: all stay
        ("Which file says so?", ["The", "meeting", "is"]),  # no file's name: all stay
    ],
)
def test_the_question_says_what_form_its_answer_starts_with(question: str, kept: list[str]) -> None:
    assert starts(span_grammar([MEETING], starting=answer_form(question)))[: len(kept)] == kept


def test_a_labelled_value_is_found_across_punctuation() -> None:
    row = "river: Yangtze, length_km: 6300, continent: Asia"
    assert starts(span_grammar([row], starting=answer_form("On which continent is it?"))) == [
        "Asia"
    ]
    assert starts(span_grammar([row], starting=answer_form("Which river is in Asia?"))) == [
        "Yangtze"
    ]


def test_a_copy_never_stops_inside_a_word_written_without_spaces() -> None:
    rules = span_grammar(["At 10:00, in todo.md."]).splitlines()
    assert rules[0].split(" ::= ")[1].split(" | ")[:3] == ["span-0-0", "span-0-1-whole", "span-0-2"]
    assert 'span-0-1-whole ::= "10" ":" span-0-3' in rules  # then "00", and maybe more
    assert 'span-0-6-whole ::= "todo" "." span-0-8' in rules  # "todo.md", not "todo."
    assert 'span-0-3 ::= "00" (span-0-4)?' in rules  # "00" itself may end a copy
    minified = span_grammar([json.dumps({f"k{i}": i for i in range(50)}, separators=(",", ":"))])
    assert "-whole" not in minified  # a long run without spaces is no word: linear grammar


def test_which_file_is_answered_with_a_files_name() -> None:
    texts = ["- call the dentist", "notes/todo.md"]  # an observation, a call's argument
    rules = span_grammar(texts, starting=answer_form("Which file mentions the dentist?"))
    assert starts(rules) == ["todo"]  # todo.md: the name, without its folder


def test_a_which_file_question_may_be_answered_with_a_file_it_names() -> None:
    question = "Which file has fewer words, notes/meeting.txt or notes/todo.md?"
    grammar = joiner_grammar(copy_from=["notes/meeting.txt", "notes/todo.md"], question=question)
    copied = [line for line in grammar.splitlines() if line.startswith("copied")]
    assert starts("\n".join(copied)) == ["meeting", "todo"]
    other = joiner_grammar(copy_from=["Thank you, notes/todo.md"], question="What is todo.md?")
    copied = [line for line in other.splitlines() if line.startswith("copied")]
    assert starts("\n".join(copied)) == ["Thank", "you", "notes"]  # other questions: no echo


def test_named_choices_are_the_ones_the_question_names() -> None:
    files = ["planets.txt", "notes/todo.md", "notes/meeting.txt"]
    assert named_choices(files, "How many lines does Planets.txt have?") == ["planets.txt"]
    assert named_choices(files, "Is todo.md or notes/meeting.txt longer?") == files[1:]
    assert named_choices(files, "Which file mentions the dentist?") == []
    assert named_choices([".", "notes"], "What is in the notes folder?") == ["notes"]
    assert named_choices([".", "notes"], "What is in notes/todo.md.") == []
    assert named_choices(["a.txt", "a.txt.bak"], "Read a.txt.bak") == ["a.txt.bak"]


def test_a_plan_grammar_holds_arguments_to_the_files_the_question_names() -> None:
    @llmc.tool(choices={"path": ["a.txt", "b.txt"]})
    def read(path: str) -> str:
        """Read a file."""
        return path

    def path_choices(question: str) -> str:
        grammar = plan_grammar([read], question=question)
        return next(line for line in grammar.splitlines() if line.startswith("choice-0-path"))

    assert path_choices("What does B.txt say?") == 'choice-0-path ::= "\\"b.txt\\""'
    assert path_choices("What do the files say?") == (
        'choice-0-path ::= "\\"a.txt\\"" | "\\"b.txt\\""'
    )


def test_a_question_that_names_a_file_starts_its_plan_with_it() -> None:
    @llmc.tool(choices={"path": ["a.txt", "b.txt"]})
    def read(path: str) -> str:
        """Read a file."""
        return path

    @llmc.tool(choices={"pattern": ["*", "*.txt"]})
    def find(pattern: str) -> list[str]:
        """List files."""
        return [pattern]

    @llmc.tool
    def calculate(expression: str) -> str:
        """Calculate."""
        return expression

    def first_task(question: str) -> str:
        rules = dict(
            line.split(" ::= ", 1)
            for line in plan_grammar([read, find, calculate], question=question).splitlines()
        )
        return re.findall(r"call-\S+", rules["task-1"])[0]

    assert first_task("How long is b.txt?") == "call-named-0"
    named = plan_grammar([read, find, calculate], question="How long is b.txt?")
    assert "call-named-0 ::= tool-0-read-0" in named.splitlines()
    assert first_task("How long are the files?") == "call-0"  # no file named: any tool
    assert first_task("What is 17 * 23?") == "call-0"  # "*" names no file
    assert named_choices(["*", ".", "*.txt"], "Is 2 * 3 . 6? List *.txt") == ["*.txt"]


@pytest.mark.parametrize("question", ["Why is the sky blue?", "Name a planet.", ""])
def test_most_questions_say_nothing_of_the_answers_form(question: str) -> None:
    assert answer_form(question) == []


def test_a_span_starts_with_the_answers_form_where_the_texts_have_it() -> None:
    def number(word: Word) -> bool:
        return word.text.isdigit()

    rules = span_grammar(["It is 10 km long."], starting=[number])
    assert rules.splitlines()[0] == "span ::= span-0-2"  # 10
    rules = span_grammar(["It is long."], starting=[number])  # no number: every start stays
    assert rules.splitlines()[0] == "span ::= span-0-0 | span-0-1 | span-0-2 | span-0-3"


@given(st.lists(st.text(max_size=30), min_size=1, max_size=4), st.text(max_size=40))
def test_the_answers_form_never_leaves_a_copied_answer_without_a_start(
    texts: list[str], question: str
) -> None:
    plain = span_grammar(texts, name="copied").splitlines()[0]
    formed = span_grammar(texts, name="copied", starting=answer_form(question)).splitlines()[0]
    assert (formed == 'copied ::= ""') == (plain == 'copied ::= ""')
    assert set(formed.split(" ::= ")[1].split(" | ")) <= set(plain.split(" ::= ")[1].split(" | "))


def test_focus_keeps_the_parts_that_speak_of_the_question() -> None:
    counts = json.dumps({"lines": 8, "words": 52, "chars": 290})
    assert focus(counts, "How many lines does a.txt have?") == ["lines: 8"]
    table = "river,length_km\nNile,6650\nDanube,2850"
    assert focus(table, "How long is the Danube?") == ["river: Danube, length_km: 2850"]
    text = "Mars is red.\nVenus is the hottest planet."
    assert focus(text, "Which planet is the hottest?") == ["Venus is the hottest planet."]
    assert focus(text, "Why?") == text.splitlines()  # nothing shared: every part stays


@given(st.text(max_size=200), st.text(max_size=60))
def test_focus_keeps_a_nonempty_part_of_what_the_text_holds(text: str, question: str) -> None:
    parts = focus(text, question)
    assert parts
    words = {w for p in parts for w in p.split()}
    assert words <= set(text.replace(",", " ").replace(":", " ").split()) | {
        w for p in parts for w in p.split()
    }


def test_copied_answers_come_from_the_focused_parts() -> None:
    grammar = joiner_grammar(
        copy_from=["Mars is red.\nVenus is the hottest planet."],
        question="Which planet is the hottest?",
        focused=True,
        replan=False,
    )
    assert '"Venus"' in grammar and '"Mars"' not in grammar
    assert '"Replan"' not in grammar and "<answer>" not in grammar


# -- llama.cpp's engine on the new rules -------------------------------------------------------


@pytest.mark.local_model
def test_llama_cpp_admits_choices_and_refuses_invented_files(model: Local) -> None:
    grammar = plan_grammar([read], max_tasks=1, thoughts=False)
    assert admits(model, grammar, '1. read("b.md")\njoin()\n<END_OF_PLAN>')
    assert not admits(model, grammar, '1. read("c.md")\njoin()\n<END_OF_PLAN>')


@pytest.mark.local_model
def test_llama_cpp_admits_only_copied_answers(model: Local) -> None:
    grammar = joiner_grammar(
        copy_from=["The meeting is on Tuesday."], question="When is it?", replan=False
    )
    assert admits(model, grammar, "Thought: it says Tuesday.\nAction: Finish(Tuesday)")
    assert not admits(model, grammar, "Thought: it says Tuesday.\nAction: Finish(<answer>)")
    assert not admits(model, grammar, "Thought: x\nAction: Finish(Wednesday)")


# -- the planner: repeats, vetoes, grammars, exemplars -----------------------------------------


async def plan_tasks(planner: Planner, question: str = "How long is the Nile?") -> PlanStream:
    plan = planner.stream(question)
    async for _ in plan:
        pass
    return plan


REPEATING = '1. length("Nile")\n2. length("Nile")\n3. length("Amazon")\njoin()\n'


async def test_a_repeated_task_stops_the_plan_or_is_dropped() -> None:
    stopped = await plan_tasks(Planner(ScriptedLLM([REPEATING]), [length], repeats="stop"))
    assert [t.id for t in stopped.tasks] == [1]
    assert [(t.id, why) for t, why in stopped.dropped] == [
        (2, "the plan stopped here: it repeats an earlier task")
    ]
    dropped = await plan_tasks(Planner(ScriptedLLM([REPEATING]), [length], repeats="drop"))
    assert [t.id for t in dropped.tasks] == [1, 3]
    allowed = await plan_tasks(Planner(ScriptedLLM([REPEATING]), [length]))
    assert [t.id for t in allowed.tasks] == [1, 2, 3]  # the default off grammar backends


async def test_a_veto_drops_a_task_and_the_tasks_that_use_it() -> None:
    text = '1. length("Nile")\n2. length("Congo")\n3. length("$2")\njoin()\n'

    def no_congo(task: llmc.Task, kept: object) -> str | None:
        return "drop" if "Congo" in task.args else None

    planner = Planner(ScriptedLLM([text]), [length], veto=no_congo)  # type: ignore[arg-type]
    round_ = await plan_tasks(planner)
    assert [t.id for t in round_.tasks] == [1]
    assert [why for _, why in round_.dropped] == [
        "dropped: vetoed",
        "dropped: it uses a dropped task",
    ]


def test_grammar_backends_get_grammars_from_the_factory_with_the_question() -> None:
    seen: list[tuple[int, str]] = []

    def factory(tools: llmc.Toolbox, first_id: int, question: str) -> str:
        seen.append((first_id, question))
        return 'root ::= "x"'

    llm = ScriptedLLM(["x"])
    llm.supports_grammar = True  # type: ignore[attr-defined]
    planner = Planner(llm, [length], grammar=factory)
    options = planner._constrained(planner.options, 4, "Why?")
    assert options.grammar == 'root ::= "x"' and seen == [(4, "Why?")]


def test_small_models_get_the_small_grammar_a_brief_prompt_and_fitting_exemplars() -> None:
    llm = ScriptedLLM(["x"])
    llm.supports_grammar = True  # type: ignore[attr-defined]
    llm.small_model_aids = True  # type: ignore[attr-defined]
    tools = llmc.Toolbox.from_path(REPO / "tools/files.py", REPO / "tools/text.py")
    small = Planner(llm, tools)
    assert small.grammar is SMALL_MODEL_PLANS and small.brief
    assert all("$" not in text.split("finish(")[0] for text in small.exemplars)
    assert all(len([ln for ln in t.splitlines() if ln[:1].isdigit()]) <= 4 for t in small.exemplars)
    full = Planner(ScriptedLLM(["x"]), tools)
    assert isinstance(full.grammar, PlanGrammar) and not full.brief
    assert len(small.system_prompt) < len(full.system_prompt) / 2
    assert Joiner(llm).mode == "copy" and Joiner(ScriptedLLM(["x"])).mode == "decide"


# -- the joiner's modes ------------------------------------------------------------------------


async def test_skip_answers_with_the_last_output_and_calls_no_llm() -> None:
    llm = ScriptedLLM(['1. length("Nile")\njoin()\n'])
    compiler = Compiler([length], llm, joiner=Joiner(llm, mode="skip"))
    answer = await compiler.run("How long is the Nile?")
    assert answer.text == "6650" and len(llm.calls) == 1


async def test_answer_mode_never_replans() -> None:
    llm = ScriptedLLM(['1. length("Nile")\njoin()\n', "Replan(the Amazon too)"])
    compiler = Compiler([length], llm, joiner=Joiner(llm, mode="answer"), max_replans=2)
    answer = await compiler.run("How long is the Nile?")
    assert answer.replans == 0 and "No new plan is possible" in llm.calls[1].messages[1]["content"]


@llmc.tool
def counts(path: str) -> dict[str, int]:
    """Count a file's lines and words."""
    return {"lines": 8, "words": 52, "chars": 300}


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How many lines does a.txt have?", "8"),
        ("How many words are in a.txt?", "52"),
        ("How big is a.txt?", None),  # no item speaks of it
        ("How many lines and words?", None),  # two do
        ("Which file has more words?", None),  # a count is not a file's name
        ("What is the number of words?", "52"),
    ],
)
def test_a_json_observation_answers_by_itself_when_one_item_speaks_of_the_question(
    question: str, expected: str | None
) -> None:
    text = json.dumps({"lines": 8, "words": 52, "chars": 300})
    assert focused_value(text, question) == expected
    assert focused_value("lines: 8\nwords: 52", "How many lines?") is None  # not JSON
    assert focused_value(json.dumps({"text": "x" * 41, "n": 1}), "Which text?") is None


@given(st.dictionaries(st.text(min_size=1), st.integers() | st.text()), st.text())
def test_a_direct_answer_is_always_one_of_the_values(
    data: dict[str, object], question: str
) -> None:
    found = focused_value(json.dumps(data), question)
    shown = {v if isinstance(v, str) else json.dumps(v) for v in data.values()}
    assert found is None or found in shown


async def test_the_copy_joiner_answers_a_focused_json_item_without_a_call() -> None:
    llm = ScriptedLLM(['1. counts("a.txt")\njoin()\n', "Thought: x\nAction: Finish(52)"])
    llm.supports_grammar = True  # type: ignore[attr-defined]
    compiler = Compiler([counts], llm, joiner=Joiner(llm, mode="copy"))
    answer = await compiler.run("How many lines does a.txt have?")
    assert answer.text == "8" and len(llm.calls) == 1  # the planner only
    assert [span.kind for span in answer.trace.spans] == ["planner"]
    calls = ScriptedLLM(['1. counts("a.txt")\njoin()\n', "Thought: x\nAction: Finish(52)"])
    calls.supports_grammar = True  # type: ignore[attr-defined]
    joiner = Joiner(calls, mode="copy", direct=False)
    answer = await Compiler([counts], calls, joiner=joiner).run("How many lines does a.txt have?")
    assert answer.text == "52" and len(calls.calls) == 2  # the joiner was asked


async def test_a_direct_answer_says_where_it_came_from() -> None:
    llm = ScriptedLLM(['1. counts("a.txt")\njoin()\n'])
    llm.supports_grammar = True  # type: ignore[attr-defined]
    compiler = Compiler([counts], llm, joiner=Joiner(llm, mode="copy"))
    out = io.StringIO()
    progress = Progress(out)
    answers = []
    async for event in compiler.stream("How many lines does a.txt have?"):
        progress.event(event)
        if isinstance(event, llmc.AnswerText):
            answers.append(event)
    assert [(a.text, a.by) for a in answers] == [("8", "observation")]
    assert "answer   from the observation itself (no LLM call): 8" in out.getvalue()


def test_joiner_modes_are_checked() -> None:
    with pytest.raises(ValueError, match="decide, answer, copy or skip"):
        Joiner(ScriptedLLM(["x"]), mode="guess")  # type: ignore[arg-type]


@pytest.mark.local_model
async def test_the_local_model_answers_from_the_focused_observation(
    monkeypatch: pytest.MonkeyPatch, model: Local
) -> None:
    monkeypatch.setenv("LLMC_FILES_ROOT", str(REPO / "tests/data/files"))
    tools = [t for pack in ("files", "math", "text") for t in llmc.catalog.load_pack(pack)]
    answer = await Compiler(tools, model).run("How many lines does planets.txt have?")
    assert answer.rounds[0].tasks[0].tool in {"count_file", "read_file"}
    assert len(answer.text) < 40 and "<answer>" not in answer.text


# -- progress ----------------------------------------------------------------------------------


async def test_progress_shows_every_phase_and_never_stays_silent() -> None:
    llm = ScriptedLLM(
        ['1. length("Nile")\njoin()\n', "Thought: it is 6650.\nAction: Finish(6650 km)"],
        first_chunk_delay=0.6,
    )
    out = io.StringIO()
    progress = Progress(out, quiet_seconds=0.2)
    compiler = Compiler([length], llm)
    import asyncio

    beat = asyncio.create_task(progress.heartbeat())
    progress.begin("planning")
    async for event in compiler.stream("How long is the Nile?"):
        if isinstance(event, llmc.compiler.Answered):
            progress.summary(event.answer)
        else:
            progress.event(event)
    beat.cancel()
    text = out.getvalue()
    assert "... still planning" in text and "... still joining" in text
    assert '  plan     1. length("Nile")' in text
    assert "  started  $1 length" in text and "joining (plan 1's observations)" in text
    assert "  join     Thought: it is 6650." in text
    assert "time: plan" in text and ", tools " in text and ", join " in text


def test_phase_times_add_up_spans_by_kind() -> None:
    trace = Trace("r", 0.0)
    trace.spans += [Span("planner", "plan 1", 0.0, 2.0), Span("joiner", "join 1", 2.5, 3.0)]
    trace.tasks[1] = TaskRecord(1, "t", frozenset(), 1.0, started=2.0, finished=2.25)
    assert phase_times(trace) == [("plan", 2.0), ("tools", 0.25), ("join", 0.5)]


def test_a_millisecond_task_next_to_seconds_of_llm_time_is_still_drawn() -> None:
    trace = Trace("r", 0.0)
    trace.spans.append(Span("planner", "plan 1", 0.0, 5.0))
    trace.tasks[1] = TaskRecord(
        1, "count_file", frozenset(), 5.0, status=TaskStatus.DONE, started=5.0, finished=5.002
    )
    trace.finished = 5.01
    svg = timeline_svg(trace)
    bar = svg.split('class="bar"')[1]
    width = float(bar.split('width="')[1].split('"')[0])
    assert width >= 4.0
    assert "2.0 ms" in svg
