"""Plan-time fusion: tools used together, shown to the planner as one tool, expanded back.

:func:`fuse` declares a chain of tools: ``fuse(search, math)`` is one tool,
``search_then_math``, that runs ``search`` and hands its output to ``math``'s first
parameter (or the parameter named with ``(math, "context")``). Its signature combines the
members' parameters, the fed one left out, so the planner writes one call where it wrote two::

    3. search_then_math("Mariana Trench", "depth in m * 0.8")

instead of ``3. search("Mariana Trench")`` and ``4. math("depth in m * 0.8", $3)``: fewer
calls, fewer completion tokens, and fewer observations for the joiner to read (it sees the
chain's final output only, so fuse tools whose in-between output the answer does not need).

A :class:`Fuser` is the pass that undoes it before anything runs: each call of a fused tool
becomes its member tasks, so every member runs, is traced, retried, batched and deduplicated
as a task of its own. The last member takes the fused task's id, so ``$N`` in later tasks (and
the joiner's observation of task N) is the chain's final output; the others get new ids from
a range the planner does not use (from :data:`FIRST_MEMBER_ID` for streamed plans, right
above the plan's own ids for a whole plan). The expansion works task by task, so it runs
on a plan as it streams from the planner. ``plan.fused_groups`` records each fused call's
members; an unexpanded fused tool still works, running its members in order in one task.

:func:`suggest_fusions` finds candidates in past plans: pairs of tools where the second
takes the first's whole output as an argument, in at least ``min_plans`` plans.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import PlanError, ToolArgumentError, ToolDefinitionError
from .plan import Plan
from .task import Ref, Task
from .tool import Tool, tool
from .toolbox import Toolbox, Tools

#: The first id a :class:`Fuser` gives to members of fused calls in a streamed plan; planners
#: number their tasks from 1 and never come near it.
FIRST_MEMBER_ID = 1_000_001


@dataclass(frozen=True, slots=True)
class Step:
    """One member of a fused tool.

    Attributes:
        tool: the member tool.
        feed: the member's parameter that receives the previous member's output (None for
            the first member).
        params: the fused tool's parameter name -> the member's parameter name.
    """

    tool: Tool
    feed: str | None
    params: Mapping[str, str]


@dataclass(eq=False)
class FusedTool(Tool):
    """A chain of tools offered to the planner as one tool; build it with :func:`fuse`.

    Called directly (or run unexpanded) it runs its members in order in one call. A
    :class:`Fuser` expands its calls into member tasks instead.

    Attributes:
        steps: the members in order, with how the fused parameters map onto theirs.
    """

    steps: tuple[Step, ...] = ()

    @property
    def members(self) -> tuple[Tool, ...]:
        """The member tools, in order."""
        return tuple(step.tool for step in self.steps)

    def expand(self, task: Task, allocate: Callable[[], int]) -> list[Task]:
        """The member tasks of a call of this tool: the last takes the task's id.

        Args:
            task: a call of this fused tool.
            allocate: gives a fresh task id for each other member.

        Raises:
            PlanError: the call's arguments do not fit the fused signature.
        """
        try:
            arguments = self.name_arguments(task.args, task.kwargs)
        except ToolArgumentError as exc:
            raise PlanError(f"task {task.id}: {exc}", task_id=task.id) from None
        ids = [allocate() for _ in self.steps[:-1]] + [task.id]
        tasks: list[Task] = []
        previous: int | None = None
        for index, (step, task_id) in enumerate(zip(self.steps, ids, strict=True)):
            given = {step.params[n]: v for n, v in arguments.items() if n in step.params}
            kwargs = {
                name: Ref(previous) if name == step.feed and previous is not None else given[name]
                for name in step.tool.parameters
                if name in given or name == step.feed
            }
            member = Task(task_id, step.tool.name, (), kwargs, task.thought if index == 0 else None)
            if isinstance(step.tool, FusedTool):
                tasks += step.tool.expand(member, allocate)
            else:
                tasks.append(member)
            previous = task_id
        return tasks


def fuse(
    *steps: Tool | Callable[..., Any] | tuple[Tool | Callable[..., Any], str],
    name: str | None = None,
    description: str | None = None,
) -> FusedTool:
    """Declare a chain of tools that the planner sees, and calls, as one tool.

    ``fuse(a, b, c)`` means ``c(b(a(...), ...), ...)``: each member after the first receives
    the previous member's output in its first parameter, or in the one named by passing
    ``(tool, "parameter")``. The fused tool takes every member's other parameters: required
    ones first, then those with defaults, each in member order; a name already taken by an
    earlier member is prefixed with its member's name (``math_query``). It returns what the
    last member returns.

    Args:
        *steps: the member tools in order (tools or plain functions), two or more.
        name: the fused tool's name; default ``a_then_b``.
        description: one line for the planner; default: the chain as one nested call,
            ``Same as math(problem, context=search(query)).``

    Raises:
        ToolDefinitionError: fewer than two members, a feed parameter that does not exist,
            or parameter names that cannot be told apart.

    Example:
        >>> search_then_math = llmc.fuse(search, (math, "context"))   # doctest: +SKIP
    """
    if len(steps) < 2:
        raise ToolDefinitionError("fuse() needs two tools or more, in the order they run")
    members: list[tuple[Tool, str | None]] = []
    for index, item in enumerate(steps):
        target, feed = item if isinstance(item, tuple) else (item, None)
        member = target if isinstance(target, Tool) else tool(target)
        if index == 0 and feed is not None:
            raise ToolDefinitionError(
                f"fuse(): the first tool ({member.name}) receives no earlier output; "
                "name a feed parameter only for the tools after it"
            )
        if index > 0:
            feed = feed or (member.parameters[0] if member.parameters else None)
            if feed is None or feed not in member.parameters:
                raise ToolDefinitionError(
                    f"fuse(): {member.name}() has no parameter {feed!r} to receive the "
                    f"previous tool's output; it takes: {', '.join(member.parameters) or 'none'}"
                )
        members.append((member, feed))
    fused_name = name or "_then_".join(member.name for member, _ in members)
    params, built = _combined_parameters(members, fused_name)
    returns = _hints(members[-1][0]).get("return", Any)
    doc = _docstring(params, built)
    text = description or _describe(built)
    chain = tuple(built)

    async def run_chain(**arguments: Any) -> Any:
        output: Any = None
        for index, step in enumerate(chain):
            given = {step.params[n]: v for n, v in arguments.items() if n in step.params}
            if index and step.feed is not None:
                given[step.feed] = output
            output = await step.tool.invoke(step.tool.bind((), given))
        return output

    face = {
        "__signature__": inspect.Signature([p for p, _ in params], return_annotation=returns),
        "__annotations__": {**{p.name: hint for p, hint in params}, "return": returns},
        "__name__": fused_name,
        "__qualname__": fused_name,
        "__doc__": doc,
    }
    for attribute, value in face.items():
        setattr(run_chain, attribute, value)
    return FusedTool(name=fused_name, description=text, fn=run_chain, steps=chain)


def _hints(member: Tool) -> dict[str, Any]:
    try:
        return typing.get_type_hints(member.fn, include_extras=True)
    except Exception:
        return {}


def _combined_parameters(
    members: list[tuple[Tool, str | None]], fused_name: str
) -> tuple[list[tuple[inspect.Parameter, Any]], list[Step]]:
    """The fused signature's parameters (with their type hints) and each member's mapping."""
    taken: set[str] = set()
    required: list[tuple[inspect.Parameter, Any]] = []
    optional: list[tuple[inspect.Parameter, Any]] = []
    steps: list[Step] = []
    for member, feed in members:
        hints = _hints(member)
        mapping: dict[str, str] = {}
        for param in member.signature.parameters.values():
            if param.name == feed:
                continue
            outer = param.name if param.name not in taken else f"{member.name}_{param.name}"
            if outer in taken:
                raise ToolDefinitionError(
                    f"fuse(): two parameters of {fused_name} would be called {outer!r}; "
                    "rename one in its tool"
                )
            taken.add(outer)
            mapping[outer] = param.name
            hint = hints.get(param.name, Any)
            new = inspect.Parameter(
                outer,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=param.default,
                annotation=hint,
            )
            (required if param.default is param.empty else optional).append((new, hint))
        steps.append(Step(member, feed, mapping))
    return required + optional, steps


def _docstring(params: list[tuple[inspect.Parameter, Any]], steps: list[Step]) -> str:
    """A Google-style docstring whose Args carry the members' own parameter texts."""
    lines = ["Args:"]
    for param, _ in params:
        for step in steps:
            if param.name in step.params:
                text = step.tool.docstring.params.get(step.params[param.name], "")
                lines.append(f"    {param.name}: {text or 'see ' + step.tool.name}")
    return "\n".join(lines)


def _describe(steps: list[Step]) -> str:
    """The chain as one nested call: ``Same as math(problem, context=search(query)).``

    Short on purpose: it sits in every planner prompt, next to the members' own lines.
    """
    expression = ""
    for index, step in enumerate(steps):
        outer = {inner: name for name, inner in step.params.items()}
        args = []
        for position, inner in enumerate(step.tool.parameters):
            if index and inner == step.feed:
                args.append(expression if position == 0 else f"{inner}={expression}")
            else:
                args.append(outer[inner])
        expression = f"{step.tool.name}({', '.join(args)})"
    return f"Same as {expression}."


# -- the pass --------------------------------------------------------------------------------


class Fuser:
    """Expands calls of fused tools into their member tasks: a pass Plan -> Plan that also
    works one task at a time, on a plan as it streams.

    One Fuser numbers the members of every call it expands, so use one per question (the
    ids of its members stay unique across replans) or per plan.

    Args:
        fused: the fused tools whose calls to expand (a whole plan's own fused tools are
            expanded too).
        first_id: the first id for members; by default :data:`FIRST_MEMBER_ID` for
            streamed tasks, and right above the plan's own ids for :meth:`expand_plan`.
            Tasks arriving with an id at or above it are an error: they would collide.

    Attributes:
        groups: each expanded call's members, by label (``"search_then_math $3"``).
    """

    def __init__(self, fused: Iterable[FusedTool] = (), *, first_id: int | None = None) -> None:
        self.fused: dict[str, FusedTool] = {}
        for item in fused:
            if not isinstance(item, FusedTool):
                raise TypeError(f"Fuser takes tools made by llmc.fuse(), not {item!r}")
            self.fused[item.name] = item
        self.first_id = first_id
        self.next_id = first_id or 0
        self.groups: dict[str, tuple[int, ...]] = {}

    def _allocate(self) -> int:
        task_id = self.next_id
        self.next_id += 1
        return task_id

    def expand(self, task: Task) -> list[Task]:
        """The tasks that replace one task: its members if it calls a fused tool, else itself.

        Raises:
            PlanError: the task's id is in the members' range, or its arguments do not fit.
        """
        if self.first_id is None:
            self.first_id = self.next_id = FIRST_MEMBER_ID
        if task.id >= self.first_id:
            raise PlanError(
                f"task {task.id}: ids from {self.first_id} on are kept for the members of "
                "fused calls; number tasks from 1",
                task_id=task.id,
            )
        fused = self.fused.get(task.tool)
        if fused is None:
            return [task]
        tasks = fused.expand(task, self._allocate)
        self.groups[f"{fused.name} ${task.id}"] = tuple(t.id for t in tasks)
        return tasks

    def members(self) -> list[Tool]:
        """The plain tools that the expanded tasks call (nested fused tools opened up)."""
        found: dict[str, Tool] = {}
        for fused_tool in self.fused.values():
            for member in _leaves(fused_tool):
                found.setdefault(member.name, member)
        return list(found.values())

    async def expand_stream(self, tasks: AsyncIterable[Task]) -> AsyncIterator[Task]:
        """Expand tasks as they arrive (from a streaming planner)."""
        async for task in tasks:
            for item in self.expand(task):
                yield item

    def expand_plan(self, plan: Plan) -> Plan:
        """A new plan with every call of a fused tool replaced by its members.

        The plan's own fused tools (those in ``plan.tools``) are expanded too, and their
        members join the new plan's tools. The new plan's ``fused_groups`` holds the plan's
        groups and those of this expansion.

        Raises:
            PlanError: as :meth:`expand`; DuplicateToolError: a member's name is taken by a
                different tool of the plan.
        """
        own = [t for t in (plan.tools or {}).values() if isinstance(t, FusedTool)]
        for fused_tool in own:
            self.fused.setdefault(fused_tool.name, fused_tool)
        if self.first_id is None:
            self.first_id = self.next_id = plan.next_id
        tools: Toolbox | None = None
        if plan.tools is not None:
            tools = Toolbox(plan.tools)
            for member in self.members():
                tools.add(member)
        before = set(self.groups)
        result = Plan(tools=tools)
        for task in plan:
            for item in self.expand(task):
                result.append(item)
        result.fused_groups = {
            **plan.fused_groups,
            **{label: ids for label, ids in self.groups.items() if label not in before},
        }
        return result


def _leaves(fused: FusedTool) -> list[Tool]:
    """The plain tools a fused tool runs, nested fused tools opened up."""
    found: list[Tool] = []
    for member in fused.members:
        found += _leaves(member) if isinstance(member, FusedTool) else [member]
    return found


# -- suggestions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A pair of tools worth fusing: ``then`` took ``first``'s whole output in ``plans`` plans.

    Attributes:
        first: the tool whose output is used.
        then: the tool that uses it.
        feed: the parameter of ``then`` that received it (a name, or a position when the
            tools were not known).
        plans: how many plans had the pair.
        examples: up to three (plan index, first task id, then task id) occurrences.
    """

    first: str
    then: str
    feed: str | int
    plans: int
    examples: tuple[tuple[int, int, int], ...] = field(default=(), compare=False)

    def fuse(self, tools: Tools, *, name: str | None = None) -> FusedTool:
        """The fused tool for this pair, from the given tools."""
        box = Toolbox.of(tools)
        then = box[self.then]
        feed = self.feed if isinstance(self.feed, str) else then.parameters[self.feed]
        return fuse(box[self.first], (then, feed), name=name)


def suggest_fusions(
    history: Iterable[Plan | Iterable[Task] | Any],
    *,
    min_plans: int = 2,
    tools: Tools | None = None,
) -> list[Suggestion]:
    """Pairs of tools that past plans chained, for :func:`fuse`, most frequent first.

    A pair counts once per plan in which a task of tool B takes the output of a task of tool
    A as a whole argument (``$N`` or ``{"$ref": N}``, not inside a string or a list).

    Args:
        history: past plans: Plans, lists of tasks, or Answers (their ``plan``).
        min_plans: the fewest plans a pair must appear in.
        tools: the tools, to name positional parameters (else positions are given).
    """
    box = Toolbox.of(tools) if tools is not None else None
    seen: dict[tuple[str, str, str | int], list[tuple[int, int, int]]] = {}
    for index, item in enumerate(history):
        tasks = list(getattr(item, "plan", item))
        by_id = {task.id: task for task in tasks}
        found: dict[tuple[str, str, str | int], tuple[int, int, int]] = {}
        for task in tasks:
            slots: list[tuple[str | int, Any]] = [*enumerate(task.args), *task.kwargs.items()]
            for slot, value in slots:
                if not isinstance(value, Ref) or value.task_id not in by_id:
                    continue
                feed: str | int = slot
                if isinstance(slot, int) and box is not None and task.tool in box:
                    names = box[task.tool].parameters
                    feed = names[slot] if slot < len(names) else slot
                key = (by_id[value.task_id].tool, task.tool, feed)
                found.setdefault(key, (index, value.task_id, task.id))
        for key, example in found.items():
            seen.setdefault(key, []).append(example)
    suggestions = [
        Suggestion(first, then, feed, len(examples), tuple(examples[:3]))
        for (first, then, feed), examples in seen.items()
        if len(examples) >= min_plans
    ]
    suggestions.sort(key=lambda s: (-s.plans, s.first, s.then, str(s.feed)))
    return suggestions
