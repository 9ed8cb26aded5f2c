"""Plans: tasks over tools and the references between them, as a networkx DiGraph.

A plan's tasks and their arguments are the values of :mod:`llmc.task` (:class:`~llmc.task.Task`,
:class:`~llmc.task.Ref`, :class:`~llmc.task.Finish`); this module holds them together.
Plans are built three ways, which all give the same :class:`Plan`: from Python
(:meth:`Plan.add`), from plan text (:meth:`Plan.parse`) and from JSON (:meth:`Plan.from_json`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx
import pydantic

from .errors import CycleError, PlanError
from .json_plan import plan_object
from .parse import PlanParser
from .task import (
    JSON_ARGUMENT_DEPTH,
    MAX_NESTING,
    Finish,
    Ref,
    Task,
    TaskChecker,
    TaskModel,
    check_call,
    check_finish,
    check_json_nesting,
    finish_from_json,
    task_from_model,
    to_json_value,
)
from .tool import Tool
from .toolbox import Toolbox, Tools

if TYPE_CHECKING:
    from collections.abc import Callable
    from os import PathLike


class PlanModel(pydantic.BaseModel):
    """JSON form of a plan: its tasks (in any order; they are sorted by dependency) and,
    optionally, the plan's own answer (``"finish"``: a string with ``$N`` placeholders or
    ``{"$ref": N}``; see :class:`~llmc.task.Finish`)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    tasks: list[TaskModel]
    finish: Any = None


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
        """Build a plan from JSON text (see :meth:`from_dict`).

        Raises:
            PlanError: the text is not JSON, or arguments nest deeper than
                :data:`MAX_NESTING` (with the line and column), or as for :meth:`from_dict`.
        """
        scan = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        check_json_nesting(scan, JSON_ARGUMENT_DEPTH + MAX_NESTING)
        return cls.from_dict(plan_object(text), tools=tools)

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
                "args": to_json_value(list(task.args)),
                "kwargs": to_json_value(dict(task.kwargs)),
            }
            if task.thought is not None:
                item["thought"] = task.thought
            tasks.append(item)
        if self.finish is not None:
            return {"tasks": tasks, "finish": to_json_value(self.finish.value)}
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
        from . import viz  # the door up a floor: pictures read plans and traces

        return viz.write(viz.plan_svg(self, **options), path)

    def to_mermaid(self, **options: Any) -> str:
        """The plan as a Mermaid flowchart (see :func:`llmc.viz.plan_mermaid`)."""
        from . import viz  # the door up a floor: pictures read plans and traces

        return viz.plan_mermaid(self, **options)

    def to_dot(self, **options: Any) -> str:
        """The plan as a Graphviz digraph (see :func:`llmc.viz.plan_dot`)."""
        from . import viz  # the door up a floor: pictures read plans and traces

        return viz.plan_dot(self, **options)

    def _repr_svg_(self) -> str:
        """Jupyter shows a plan as its picture."""
        return self.to_svg()
