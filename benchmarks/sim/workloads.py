"""Workloads: questions with their gold decompositions (the DAG a good planner writes).

Each :class:`Question` carries tasks over the two simulated tools (see
:mod:`benchmarks.sim.world`): ``search(query, context)`` and ``math(problem, context)``, where
``context`` holds the outputs of the task's dependencies. The workload policy renders the
same DAG as each framework's planner output or as function calls.

- ``parallelqa``: questions from LLMCompiler's ParallelQA set; with ``k`` its branch count:
  ``k`` searches, ``k`` computations (one on each search), one combination, whose output is
  the answer. Queries are the
  entities named in the question where they can be picked out, else numbered placeholders.
- ``movies``: questions from the movie recommendation set (item 0, the planner's in-context
  example, is skipped): 4 searches, one per movie named, then the choice, made by the
  answering LLM call.
- synthetic shapes: ``chain`` (4 searches, each building on the one before, then a
  computation), ``fanout`` (6 independent searches, one combination), ``diamond`` (one
  search, 3 searches that build on it, one combination) and ``wide-deep`` (3 branches of
  search, search, computation; one combination). Each ends in a computation whose output is
  the answer (:attr:`Question.answer_task`).

The question sets are the LLMCompiler paper's (MIT): the folder in ``LLMC_DATA``, else
``../shared/data/llmcompiler/`` beside the repository, else the slice of them that ships in
``benchmarks/data/llmcompiler/`` (:data:`SAMPLE`), so that a fresh clone runs too.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DATA",
    "SAMPLE",
    "SHAPES",
    "WORKLOADS",
    "GoldTask",
    "Question",
    "Workload",
    "load_workload",
]

#: The slice of the question sets that ships with the benchmarks (see its README.md).
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "llmcompiler"
_BESIDE = Path(__file__).resolve().parents[3] / "shared" / "data" / "llmcompiler"


def _find_data() -> Path:
    """``LLMC_DATA`` if set, else the full sets beside the repository, else :data:`SAMPLE`."""
    if "LLMC_DATA" in os.environ:
        return Path(os.environ["LLMC_DATA"])
    return _BESIDE if (_BESIDE / "parallelqa_dataset.json").is_file() else SAMPLE


#: Where the question sets are read from by default.
DATA = _find_data()


@dataclass(frozen=True, slots=True)
class GoldTask:
    """One tool call of a gold decomposition.

    Attributes:
        id: its number, from 1, in an order where dependencies come first.
        tool: ``"search"`` or ``"math"``.
        key: the first argument: the query or the problem.
        deps: the tasks whose outputs it takes as ``context``.
    """

    id: int
    tool: str
    key: str
    deps: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Question:
    """A question, its gold decomposition and its answer.

    Attributes:
        id: unique within the whole run, e.g. ``"parallelqa-12"``.
        text: the question as asked.
        tasks: the gold decomposition, dependencies first.
        answer: the answer the simulated LLM gives once the results are in.
        answer_task: the task whose output is the answer (a final computation), so a plan
            may answer with ``finish($N)``; None when the answer needs reading the results
            (the movie choice). The simulated tools return the answer as its output.
    """

    id: str
    text: str
    tasks: tuple[GoldTask, ...]
    answer: str
    answer_task: int | None = None

    def task(self, task_id: int) -> GoldTask:
        """The task numbered ``task_id``."""
        return next(task for task in self.tasks if task.id == task_id)

    @property
    def sinks(self) -> tuple[GoldTask, ...]:
        """The tasks no other task uses: the answer needs their outputs."""
        used = {dep for task in self.tasks for dep in task.deps}
        return tuple(task for task in self.tasks if task.id not in used)

    @property
    def depth(self) -> int:
        """Tasks on the longest dependency chain."""
        level: dict[int, int] = {}
        for task in self.tasks:
            level[task.id] = 1 + max((level[d] for d in task.deps), default=0)
        return max(level.values(), default=0)


@dataclass(frozen=True, slots=True)
class Workload:
    """Questions of one shape.

    Attributes:
        name: e.g. ``"parallelqa"``.
        description: the shape in a few words.
        questions: the questions.
    """

    name: str
    description: str
    questions: tuple[Question, ...]


class _Builder:
    """Numbers tasks as they are added."""

    def __init__(self) -> None:
        self.tasks: list[GoldTask] = []

    def add(self, tool: str, key: str, *deps: int) -> int:
        task = GoldTask(len(self.tasks) + 1, tool, key, tuple(deps))
        self.tasks.append(task)
        return task.id


# -- ParallelQA --------------------------------------------------------------------------------

_NOT_NAMES_TEXT = (
    "If The With Considering Which What Determine Calculate Compare Suppose Assuming Given "
    "When Between Among Find Imagine Of In A An And Is Rank How Identify After Let Say Using "
    "Should Were For Who From Out Compute Factoring Among Taking Under Picture Consider "
    "Evaluate Order Sort List Provide Tell Please Was Are Do Does Did"
)
_NOT_NAMES = frozenset(_NOT_NAMES_TEXT.split())
_NAME = re.compile(r"[A-Z][\w'.-]*(?:\s+(?:of|the|de|du|la|del)?\s*[A-Z][\w'.-]*)*")


def entities(question: str, count: int) -> list[str]:
    """The first ``count`` distinct capitalised names in ``question``, padded with
    placeholders when there are fewer."""
    found: list[str] = []
    for match in _NAME.findall(question):
        words = [w for w in match.split() if w not in _NOT_NAMES]
        while words and words[0].islower():
            words.pop(0)
        name = " ".join(words).rstrip(".'s").strip()
        if name and name not in found:
            found.append(name)
    found = found[:count]
    return found + [f"item {i + 1} of the question" for i in range(len(found), count)]


def _parallelqa_question(item: dict[str, object]) -> Question:
    text = str(item["question"])
    branches = int(str(item.get("branch", 2)))
    build = _Builder()
    lookups = [build.add("search", name) for name in entities(text, branches)]
    computed = [
        build.add("math", f"value of {build.tasks[s - 1].key} as the question changes it", s)
        for s in lookups
    ]
    names = ", ".join(build.tasks[s - 1].key for s in lookups)
    last = build.add("math", f"combine the values of {names} as the question asks", *computed)
    answer = str(item["answer"])
    return Question(f"parallelqa-{item['id']}", text, tuple(build.tasks), answer, last)


def _question_set(data: Path, name: str) -> list[dict[str, Any]]:
    """The items of one question set file.

    Raises:
        FileNotFoundError: the file is missing; the message says where the sets may come from.
    """
    path = data / name
    if not path.is_file():
        raise FileNotFoundError(
            f"no question set {name} in {data}: give --data DIR (or set LLMC_DATA) for a folder "
            f"that holds the LLMCompiler question sets, or leave both out to use the slice in "
            f"{SAMPLE}"
        )
    items: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return items


def parallelqa(count: int, data: Path = DATA) -> Workload:
    """``count`` ParallelQA questions, every branch count in turn (2, 3, 4, 5, 2, ...)."""
    items = _question_set(data, "parallelqa_dataset.json")
    by_branch: dict[int, list[dict[str, object]]] = {}
    for item in items:
        by_branch.setdefault(int(item.get("branch", 2)), []).append(item)
    picked: list[dict[str, object]] = []
    while len(picked) < count and any(by_branch.values()):
        for branches in sorted(by_branch):
            if by_branch[branches] and len(picked) < count:
                picked.append(by_branch[branches].pop(0))
    return Workload(
        "parallelqa",
        "k searches, k computations, one combination (k = 2..5)",
        tuple(_parallelqa_question(item) for item in picked),
    )


# -- movies ------------------------------------------------------------------------------------


def _movie_question(item: dict[str, str]) -> Question:
    text = item["question"]
    first = text.split("\n", 1)[0]
    named = first.removeprefix("Find a movie similar to ").split(", ")
    build = _Builder()
    for movie in named[:4]:
        build.add("search", movie.strip())
    return Question(f"movies-{item['id']}", text, tuple(build.tasks), item["answer"])


def movies(count: int, data: Path = DATA) -> Workload:
    """``count`` movie recommendation questions, from item 1 on (item 0 is an example)."""
    items = _question_set(data, "movie_recommendations_formatted.json")
    picked = [item for item in items if str(item["id"]) != "0"][:count]
    return Workload(
        "movies",
        "4 searches, then a choice",
        tuple(_movie_question(item) for item in picked),
    )


# -- synthetic shapes --------------------------------------------------------------------------

_TOPICS_TEXT = (
    "Aral Sea,Baikal,Caspian Sea,Danube,Everest,Fuji,Gobi,Hudson Bay,Irrawaddy,Jura,"
    "Kalahari,Ladoga,Mekong,Nile,Ob,Po,Rhine,Sahara,Tagus,Ural,Volga,Weser,Yukon,Zambezi"
)
_TOPICS = _TOPICS_TEXT.split(",")


def _chain(build: _Builder, topics: list[str]) -> None:
    previous = build.add("search", f"{topics[0]} overview")
    for step in range(2, 5):
        previous = build.add("search", f"{topics[0]} follow-up {step}", previous)
    build.add("math", f"final figure for {topics[0]}", previous)


def _fanout(build: _Builder, topics: list[str]) -> None:
    found = [build.add("search", f"{topic} size") for topic in topics[:6]]
    build.add("math", f"combine the six sizes of {', '.join(topics[:6])}", *found)


def _diamond(build: _Builder, topics: list[str]) -> None:
    root = build.add("search", f"{topics[0]} neighbours")
    middle = [build.add("search", f"{topic} near {topics[0]}", root) for topic in topics[1:4]]
    build.add("math", f"compare the neighbours of {topics[0]}", *middle)


def _wide_deep(build: _Builder, topics: list[str]) -> None:
    ends = []
    for topic in topics[:3]:
        first = build.add("search", f"{topic} source")
        second = build.add("search", f"{topic} measurement", first)
        ends.append(build.add("math", f"normalise the {topic} measurement", second))
    build.add("math", f"combine the three branches of {', '.join(topics[:3])}", *ends)


#: The synthetic shapes: name -> (description, builder).
SHAPES: dict[str, tuple[str, Callable[[_Builder, list[str]], None]]] = {
    "chain": ("4 dependent searches, then a computation", _chain),
    "fanout": ("6 independent searches, one combination", _fanout),
    "diamond": ("1 search, 3 searches on its result, one combination", _diamond),
    "wide-deep": ("3 branches of search, search, computation; one combination", _wide_deep),
}


def synthetic(shape: str, count: int, seed: int = 0) -> Workload:
    """``count`` questions of a synthetic shape, on topics drawn with ``seed``."""
    description, build_shape = SHAPES[shape]
    questions = []
    for index in range(count):
        topics = random.Random(f"{seed}:{shape}:{index}").sample(_TOPICS, 6)
        build = _Builder()
        build_shape(build, topics)
        text = f"Question {index + 1} of the {shape} set: what does the study of " + (
            ", ".join(topics[:-1]) + f" and {topics[-1]} conclude?"
        )
        answer = f"the {shape} figure for {topics[0]}"
        last = build.tasks[-1].id  # every shape ends in the computation that answers
        questions.append(Question(f"{shape}-{index + 1}", text, tuple(build.tasks), answer, last))
    return Workload(shape, description, tuple(questions))


#: Every workload by name.
WORKLOADS: tuple[str, ...] = ("parallelqa", "movies", *SHAPES)


def load_workload(name: str, count: int, *, data: Path = DATA, seed: int = 0) -> Workload:
    """The workload ``name`` with ``count`` questions.

    Raises:
        ValueError: no such workload.
        FileNotFoundError: a question set is missing (set ``LLMC_DATA``).
    """
    if name == "parallelqa":
        return parallelqa(count, data)
    if name == "movies":
        return movies(count, data)
    if name in SHAPES:
        return synthetic(name, count, seed)
    raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")


def all_questions(workloads: Iterable[Workload]) -> list[Question]:
    """Every question of the workloads, in order."""
    return [question for workload in workloads for question in workload.questions]
