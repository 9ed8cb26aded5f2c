"""Plans: tasks over tools and the references between them, as a networkx DiGraph.

A task's arguments are plain Python values in which two things point at earlier tasks:

- a :class:`Ref` (``$1`` in plan text) as an argument, or inside a list, tuple or dict,
  receives that task's output object;
- ``$1`` or ``${1}`` inside a string receives the output's text form. ``$$`` is a literal ``$``.

``$question`` (or ``${question}``), as an argument or inside a string, is the user's question,
so plans need not copy it; :func:`fill_question` writes it in before the tasks run.

A plan may end with its own answer, :class:`Finish` (``finish("The Nile: $3 km")`` in plan
text): the answer is rendered from task outputs once they are done, and no joiner is asked.

Plans are built three ways, which all give the same :class:`Plan`: from Python
(:meth:`Plan.add`), from plan text (:meth:`Plan.parse`) and from JSON (:meth:`Plan.from_json`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx
import pydantic

from .errors import CycleError, PlanError, ToolArgumentError, UnknownToolError
from .tool import Tool
from .toolbox import Toolbox, Tools

if TYPE_CHECKING:
    from collections.abc import Callable
    from os import PathLike

__all__ = [
    "QUESTION",
    "Finish",
    "Plan",
    "PlanModel",
    "Ref",
    "Task",
    "TaskChecker",
    "TaskModel",
    "check_call",
    "check_finish",
    "fill_question",
    "finish_from_json",
    "references",
    "render_value",
]

#: ``$$`` (a literal dollar), ``${N}`` or ``$N`` inside strings.
PLACEHOLDER = re.compile(r"\$\$|\$\{(\d+)\}|\$(\d+)")

#: The user's question, as a whole argument (``$question``) or inside a string.
QUESTION = "$question"
_QUESTION_PLACEHOLDER = re.compile(r"\$\$|\$\{question\}|\$question\b")


@dataclass(frozen=True, slots=True)
class Ref:
    """The output of an earlier task, used as an argument (``$N`` in plan text).

    In an f-string a Ref becomes ``${N}``, so ``f"summary of {ref}"`` gets the text form.
    """

    task_id: int

    def __str__(self) -> str:
        return f"${{{self.task_id}}}"

    def __format__(self, spec: str) -> str:
        return str(self)


def string_references(text: str) -> list[int]:
    """The task ids that ``$N`` / ``${N}`` placeholders in a string point at."""
    if "$" not in text:
        return []
    return [int(m.group(1) or m.group(2)) for m in PLACEHOLDER.finditer(text) if m.group(0) != "$$"]


def references(value: Any) -> set[int]:
    """Every task id a value refers to: Refs anywhere and placeholders in strings."""
    found: set[int] = set()
    _collect_references(value, found)
    return found


_COLLECTIONS = (list, tuple, set, frozenset)  # a tuple: isinstance is faster than with a union


def _collect_references(value: Any, found: set[int]) -> None:
    if isinstance(value, str):
        if "$" in value:
            found.update(string_references(value))
    elif isinstance(value, Ref):
        found.add(value.task_id)
    elif isinstance(value, _COLLECTIONS):
        for item in value:
            _collect_references(item, found)
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect_references(key, found)
            _collect_references(item, found)


def fill_question(value: Any, question: str) -> Any:
    """``value`` with ``$question`` / ``${question}`` in its strings replaced by ``question``.

    The question's own dollar signs become ``$$``, so it reaches the tool as written and is
    never read as a reference. A value without the placeholder is returned as it is.
    """
    if isinstance(value, str):
        if "question" not in value or "$" not in value:
            return value
        escaped = question.replace("$", "$$")
        return _QUESTION_PLACEHOLDER.sub(lambda m: m[0] if m[0] == "$$" else escaped, value)
    if isinstance(value, list | tuple | set | frozenset):
        items = [fill_question(item, question) for item in value]
        if all(new is old for new, old in zip(items, value, strict=False)):
            return value
        return type(value)(items)
    if isinstance(value, Mapping):
        pairs = [(fill_question(k, question), fill_question(v, question)) for k, v in value.items()]
        if all(k is old for (k, _), old in zip(pairs, value, strict=True)) and all(
            v is value[k] for k, v in pairs
        ):
            return value
        return dict(pairs)
    return value


def render_value(value: Any) -> str:
    """Plan-language text for a value: a Python literal, with Refs as ``$N``."""
    if isinstance(value, Ref):
        return f"${value.task_id}"
    if isinstance(value, list):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(render_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, set | frozenset):
        if not value:
            raise PlanError("an empty set has no literal form; use a list")
        return "{" + ", ".join(sorted(render_value(v) for v in value)) + "}"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{render_value(k)}: {render_value(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise PlanError(f"{value!r} has no literal form in plan text")
    if value is None or isinstance(value, str | bytes | bool | int | float | complex):
        return repr(value)
    raise PlanError(f"{type(value).__name__} values cannot be written in plan text: {value!r}")


@dataclass(frozen=True, slots=True)
class Task:
    """One tool call of a plan.

    Attributes:
        id: a positive integer, unique in its plan.
        tool: the tool's name.
        args: positional arguments (values that may contain Refs and placeholders).
        kwargs: keyword arguments, likewise.
        thought: the planner's reasoning for this step, when it gave one.
        dependencies: ids of the tasks whose outputs the arguments use.
    """

    id: int
    tool: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    thought: str | None = None
    dependencies: frozenset[int] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int) or self.id < 1:
            raise PlanError(f"task ids are positive integers, got {self.id!r}")
        args = self.args if type(self.args) is tuple else tuple(self.args)
        kwargs = dict(self.kwargs)
        deps: set[int] = set()
        _collect_references(args, deps)
        _collect_references(kwargs, deps)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)
        object.__setattr__(self, "dependencies", frozenset(deps))

    def to_text(self) -> str:
        """The task as one plan-language line, without its thought."""
        parts = [render_value(v) for v in self.args]
        parts += [f"{k}={render_value(v)}" for k, v in self.kwargs.items()]
        return f"{self.id}. {self.tool}({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Finish:
    """The plan's own answer, written from task outputs: ``finish($3)`` or
    ``finish("The Nile is longer: $3 km")`` in plan text, ``"finish"`` in a JSON plan.

    It ends the plan like ``join()``, but no joiner is asked: once the tasks it refers to are
    done, the answer is ``value`` with each reference replaced by its output's text form.
    When one of them failed or returned nothing, the joiner answers instead (see
    :class:`llmc.Compiler`).

    Attributes:
        value: a :class:`Ref` or a string with ``$N`` placeholders (any literal is allowed).
        thought: the planner's reason for answering this way, when it gave one.
        dependencies: ids of the tasks the answer uses.
    """

    value: Any
    thought: str | None = None
    dependencies: frozenset[int] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        deps: set[int] = set()
        _collect_references(self.value, deps)
        object.__setattr__(self, "dependencies", frozenset(deps))

    def to_text(self) -> str:
        """The plan-language line: ``finish(...)``."""
        return f"finish({render_value(self.value)})"


def check_finish(finish: Finish, known: Iterable[int]) -> None:
    """Check that a plan's answer refers only to tasks that exist.

    Raises:
        PlanError: it refers to a task that was never defined.
    """
    ids = set(known)
    for dep in sorted(finish.dependencies):
        if dep not in ids:
            raise PlanError(
                f"finish() refers to ${dep}, a task that was never defined; the answer may "
                "only use the outputs of the plan's tasks"
            )


# -- JSON form -------------------------------------------------------------------------------


def _to_json_value(value: Any) -> Any:
    if isinstance(value, Ref):
        return {"$ref": value.task_id}
    if isinstance(value, list | tuple | set | frozenset):
        return [_to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json_value(v) for k, v in value.items()}
    return value


def _from_json_value(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$ref"}:
            target = value["$ref"]
            if isinstance(target, bool) or not isinstance(target, int):
                raise PlanError(f'{{"$ref": ...}} needs a task id (an integer), got {target!r}')
            return Ref(target)
        return {k: _from_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_value(v) for v in value]
    return value


class TaskModel(pydantic.BaseModel):
    """JSON form of a task. A whole-argument reference is written ``{"$ref": N}``."""

    model_config = pydantic.ConfigDict(extra="forbid")
    id: int = pydantic.Field(ge=1)
    tool: str
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    thought: str | None = None


def task_from_model(model: TaskModel) -> Task:
    """The Task a :class:`TaskModel` describes (``{"$ref": N}`` becomes a Ref)."""
    args = tuple(_from_json_value(model.args))
    return Task(model.id, model.tool, args, _from_json_value(model.kwargs), model.thought)


class PlanModel(pydantic.BaseModel):
    """JSON form of a plan: its tasks (in any order; they are sorted by dependency) and,
    optionally, the plan's own answer (``"finish"``: a string with ``$N`` placeholders or
    ``{"$ref": N}``; see :class:`Finish`)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    tasks: list[TaskModel]
    finish: Any = None


def finish_from_json(value: Any) -> Finish | None:
    """The :class:`Finish` of a JSON plan's ``"finish"`` value (None when it has none)."""
    return None if value is None else Finish(_from_json_value(value))


# -- the plan --------------------------------------------------------------------------------


class Plan:
    """Tasks and their dependencies: a DAG whose edges run from a task to its dependents.

    Tasks are kept in a valid execution order (every task after its dependencies).
    Build with :meth:`add`, :meth:`parse` or :meth:`from_json`; check with :meth:`validate`.
    """

    def __init__(self, tasks: Iterable[Task] = (), *, tools: Tools | None = None) -> None:
        self.graph: nx.DiGraph[int] = nx.DiGraph()
        self.tools = Toolbox.of(tools) if tools is not None else None
        self._tasks: dict[int, Task] = {}
        self._max_id = 0
        self._checker = TaskChecker(self.tools)
        #: Tasks that ran as one fused call, by label (see :mod:`llmc.fuser`); pictures
        #: outline each group.
        self.fused_groups: dict[str, tuple[int, ...]] = {}
        #: Token budgets by task id (tokens, or a short label), shown under the boxes of
        #: pictures; a compiler run sets each cut observation's share (see :mod:`llmc.budget`).
        self.budgets: dict[int, int | str] = {}
        #: The plan's own answer (``finish(...)``), or None when a joiner answers.
        self.finish: Finish | None = None
        for task in tasks:
            self.append(task)

    # -- building ------------------------------------------------------------------------

    def append(self, task: Task) -> Task:
        """Add a task whose dependencies are already in the plan.

        Raises:
            PlanError: duplicate id, or a reference to a missing or later task.
            UnknownToolError / PlanError: when the plan has tools and the call does not fit.
        """
        self._checker.tools = self.tools
        self._checker.accept(task)
        self._store(task)
        return task

    def _store(self, task: Task) -> None:
        self._checker.ids.add(task.id)
        self._tasks[task.id] = task
        self._max_id = max(self._max_id, task.id)
        self.graph.add_node(task.id)
        self.graph.add_edges_from((dep, task.id) for dep in task.dependencies)

    @property
    def next_id(self) -> int:
        """The id :meth:`add` gives the next task: one more than the largest so far."""
        return self._max_id + 1

    def add(self, tool: Tool | str, *args: Any, thought: str | None = None, **kwargs: Any) -> Ref:
        """Append a call of ``tool`` and return a Ref to its output, for later tasks' arguments.

        Example:
            >>> plan = Plan()
            >>> a = plan.add("search", "Mariana Trench")
            >>> b = plan.add("summarize", f"depth: {a}")
        """
        name = tool.name if isinstance(tool, Tool) else tool
        if isinstance(tool, Tool) and self.tools is not None and name not in self.tools:
            self.tools = Toolbox([*self.tools.values(), tool])
        task_id = self.next_id
        self.append(Task(task_id, name, args, kwargs, thought))
        return Ref(task_id)

    @classmethod
    def parse(cls, text: str, *, tools: Tools | None = None) -> Plan:
        """Parse plan text (LLMCompiler's format) into a Plan.

        Raises:
            PlanSyntaxError: with the line, column and text of the first malformed line.
        """
        from .parse import PlanParser

        parser = PlanParser(tools=tools)
        tasks = parser.feed(text)
        tasks += parser.close()
        plan = cls(tools=tools)
        for task in tasks:
            plan._store(task)  # the parser already checked every task
        plan.finish = parser.finish
        return plan

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, tools: Tools | None = None) -> Plan:
        """Build a plan from its JSON-like dict form (see :class:`PlanModel`).

        Tasks may come in any order; they are sorted by dependency.

        Raises:
            PlanError: the data does not fit the schema, or refers to missing tasks.
            CycleError: the references form a cycle.
        """
        try:
            model = PlanModel.model_validate(data)
        except pydantic.ValidationError as exc:
            raise PlanError(f"not a valid plan: {exc}") from None
        tasks: dict[int, Task] = {}
        for item in model.tasks:
            task = task_from_model(item)
            if task.id in tasks:
                raise PlanError(f"task {task.id} is defined twice", task_id=task.id)
            tasks[task.id] = task
        graph: nx.DiGraph[int] = nx.DiGraph()
        graph.add_nodes_from(tasks)
        for task in tasks.values():
            for dep in task.dependencies:
                if dep not in tasks:
                    raise PlanError(
                        f"task {task.id} refers to ${dep}, which does not exist", task_id=task.id
                    )
                graph.add_edge(dep, task.id)
        try:
            order = list(nx.lexicographical_topological_sort(graph))
        except nx.NetworkXUnfeasible:
            cycle = [edge[0] for edge in nx.find_cycle(graph)]
            path = " -> ".join(f"${n}" for n in [*cycle, cycle[0]])
            raise CycleError(
                f"the plan's references form a cycle: {path}", task_id=cycle[0]
            ) from None
        plan = cls((tasks[i] for i in order), tools=tools)
        plan.finish = finish_from_json(model.finish)
        if plan.finish is not None:
            check_finish(plan.finish, tasks)
        return plan

    @classmethod
    def from_json(cls, text: str | bytes, *, tools: Tools | None = None) -> Plan:
        """Build a plan from JSON text (see :meth:`from_dict`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(
                f"plan JSON does not parse: {exc}", line=exc.lineno, column=exc.colno
            ) from None
        if not isinstance(data, dict):
            raise PlanError('plan JSON must be an object like {"tasks": [...]}')
        return cls.from_dict(data, tools=tools)

    # -- checking ------------------------------------------------------------------------

    def validate(self, tools: Tools | None = None) -> Plan:
        """Check every task against the tools (the plan's own when none are given).

        Returns the plan, so ``Plan.parse(text).validate(tools)`` reads well.

        Raises:
            UnknownToolError: a task calls a tool that is not there.
            PlanError: a task's arguments do not fit its tool's signature.
        """
        box = Toolbox.of(tools) if tools is not None else self.tools
        if box is None:
            raise PlanError("validate() needs tools: pass tools=[...] here or to the Plan")
        for task in self._tasks.values():
            check_call(task, box)
        return self

    # -- reading -------------------------------------------------------------------------

    def __getitem__(self, task_id: int) -> Task:
        return self._tasks[task_id]

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and list(self) == list(other) and self.finish == other.finish

    def __repr__(self) -> str:
        return f"<Plan of {len(self)} tasks, {len(self.levels())} levels>"

    @property
    def tasks(self) -> list[Task]:
        """The tasks in execution order."""
        return list(self._tasks.values())

    def dependents(self, task_id: int) -> list[int]:
        """Ids of the tasks that use this task's output."""
        return sorted(self.graph.successors(task_id))

    def levels(self) -> list[list[int]]:
        """Topological generations: tasks grouped by depth. A view, never a barrier."""
        return [sorted(level) for level in nx.topological_generations(self.graph)]

    def width(self) -> int:
        """The most tasks on one level: how many could run at once at best."""
        return max((len(level) for level in self.levels()), default=0)

    def critical_path(
        self, durations: Mapping[int, float] | Callable[[Task], float]
    ) -> tuple[float, list[int]]:
        """The longest chain of dependent tasks, weighted by each task's duration.

        Args:
            durations: seconds per task id, or a function of the task.

        Returns:
            the chain's total duration and its task ids, first to last.
        """
        cost: Callable[[Task], float] = (
            durations if callable(durations) else (lambda task: durations[task.id])
        )
        best: dict[int, tuple[float, int | None]] = {}
        for task in self._tasks.values():
            parent = max(sorted(task.dependencies), key=lambda d: best[d][0], default=None)
            start = best[parent][0] if parent is not None else 0.0
            best[task.id] = (start + float(cost(task)), parent)
        if not best:
            return 0.0, []
        end = max(best, key=lambda i: best[i][0])
        path: list[int] = []
        node: int | None = end
        while node is not None:
            path.append(node)
            node = best[node][1]
        return best[end][0], path[::-1]

    def to_text(self, *, thoughts: bool = True, join: bool = True) -> str:
        """The plan in the plan language; :meth:`parse` reads it back to an equal plan.

        With ``join``, the plan ends with its :attr:`finish` line, or ``join()``.
        """
        lines: list[str] = []
        for task in self._tasks.values():
            if thoughts and task.thought:
                lines.append(f"Thought: {' '.join(task.thought.split())}")
            lines.append(task.to_text())
        if join and self.finish is not None:
            if thoughts and self.finish.thought:
                lines.append(f"Thought: {' '.join(self.finish.thought.split())}")
            lines.append(self.finish.to_text())
        elif join:
            lines.append("join()")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict form (see :class:`PlanModel`); Refs become ``{"$ref": N}``."""
        tasks = []
        for task in self._tasks.values():
            item: dict[str, Any] = {
                "id": task.id,
                "tool": task.tool,
                "args": _to_json_value(list(task.args)),
                "kwargs": _to_json_value(dict(task.kwargs)),
            }
            if task.thought is not None:
                item["thought"] = task.thought
            tasks.append(item)
        if self.finish is not None:
            return {"tasks": tasks, "finish": _to_json_value(self.finish.value)}
        return {"tasks": tasks}

    def to_json(self, *, indent: int | None = None) -> str:
        """The plan as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    # -- pictures ------------------------------------------------------------------------

    def to_svg(self, path: str | PathLike[str] | None = None, **options: Any) -> str:
        """The plan as an SVG picture, drawn by llmc (no Graphviz, no network).

        Args:
            path: a file to write the picture to, if any.
            **options: see :func:`llmc.viz.plan_svg`: ``direction="LR"``, ``trace=result``
                (colours by status), ``groups``, ``budgets``, ``title``, ``legend``.

        Returns:
            the SVG text; the same plan and options give the same bytes.
        """
        from . import viz

        return viz.write(viz.plan_svg(self, **options), path)

    def to_mermaid(self, **options: Any) -> str:
        """The plan as a Mermaid flowchart (see :func:`llmc.viz.plan_mermaid`)."""
        from . import viz

        return viz.plan_mermaid(self, **options)

    def to_dot(self, **options: Any) -> str:
        """The plan as a Graphviz digraph (see :func:`llmc.viz.plan_dot`)."""
        from . import viz

        return viz.plan_dot(self, **options)

    def _repr_svg_(self) -> str:
        """Jupyter shows a plan as its picture."""
        return self.to_svg()


class TaskChecker:
    """Checks tasks as they arrive, in order, before anything runs.

    A task may not reuse an id (its own plan's or an ``earlier`` plan's), may only refer to
    tasks that came before it, and, when ``tools`` are given, must call a known tool with
    arguments that fit its signature.
    """

    def __init__(self, tools: Toolbox | None, earlier: Iterable[int] = ()) -> None:
        self.tools = tools
        self.earlier = frozenset(earlier)
        self.ids: set[int] = set(self.earlier)

    def accept(self, task: Task) -> None:
        """Check a task and remember its id.

        Raises:
            PlanError / UnknownToolError: what is wrong with it.
        """
        if task.id in self.earlier:
            raise PlanError(
                f"task {task.id} already ran in an earlier plan; number new tasks from "
                f"{max(self.ids) + 1}",
                task_id=task.id,
            )
        if task.id in self.ids:
            raise PlanError(
                f"task {task.id} is defined twice; number each task once", task_id=task.id
            )
        for dep in sorted(task.dependencies):
            if dep not in self.ids:
                where = "a later task" if dep >= task.id else "a task that was never defined"
                raise PlanError(
                    f"task {task.id} refers to ${dep}, {where}; a task may only "
                    "use the outputs of tasks defined before it",
                    task_id=task.id,
                )
        if self.tools is not None:
            check_call(task, self.tools)
        self.ids.add(task.id)


def check_call(task: Task, tools: Toolbox) -> Tool:
    """Check that a task names a known tool and that its arguments fit the signature.

    Raises:
        UnknownToolError: the tool is not in ``tools``.
        PlanError: wrong number of arguments, an unknown keyword, or a missing one.
    """
    if task.tool not in tools:
        raise UnknownToolError(
            f"task {task.id}: {tools.unknown_message(task.tool)}", task_id=task.id
        )
    found = tools[task.tool]
    try:
        found.name_arguments(task.args, task.kwargs)
    except ToolArgumentError as exc:
        raise PlanError(f"task {task.id}: {exc}", task_id=task.id) from None
    return found
