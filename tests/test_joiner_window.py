"""A joiner prompt never overflows its window: question, task lines, earlier rounds and
observations all share it (property-tested over plans of any size and shape)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmc import Budget, Task
from llmc.budget import Meter, count_messages
from llmc.context import RunContext
from llmc.joiner import Joiner
from llmc.testing import ScriptedLLM


def rounds_of(
    sizes: list[int], arg_chars: int, obs_chars: int
) -> tuple[list[Task], dict[int, str], set[int]]:
    tasks: list[Task] = []
    observations: dict[int, str] = {}
    next_id = 1
    current: set[int] = set()
    for size in sizes:
        current = set()
        for _ in range(size):
            argument = f"topic {next_id} " + "x" * arg_chars
            tasks.append(Task(next_id, "lookup", (argument,), {"k": 3}))
            observations[next_id] = f"result {next_id}: " + "word " * (obs_chars // 5) + "end"
            current.add(next_id)
            next_id += 1
    return tasks, observations, current


async def joiner_prompt(
    window: int, question: str, tasks: list[Task], observations: dict[int, str], current: set[int]
) -> tuple[int, int, str]:
    llm = ScriptedLLM(["Thought: done.\nAction: Finish(x)"])
    meter = Meter(Budget(context_window=window))
    joiner = Joiner(llm)
    await joiner.decide(question, tasks, observations, current=current, run=RunContext(meter=meter))
    (call,) = llm.calls
    prompt = count_messages(meter.counter(llm), call.messages)
    # the window, less what the reply keeps (its max_tokens, else the split's output share)
    limit = meter.prompt_limit(llm, reserve=call.options.max_tokens)
    return prompt, window - limit, call.messages[-1]["content"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    window=st.integers(min_value=600, max_value=16384),
    sizes=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=3),
    arg_chars=st.integers(min_value=0, max_value=3000),
    obs_chars=st.integers(min_value=0, max_value=20000),
    question_chars=st.integers(min_value=1, max_value=40000),
)
async def test_a_joiner_prompt_never_overflows_its_window(
    window, sizes, arg_chars, obs_chars, question_chars
) -> None:
    tasks, observations, current = rounds_of(sizes, arg_chars, obs_chars)
    question = "How deep is it? " + "q" * question_chars
    prompt, reply, _ = await joiner_prompt(window, question, tasks, observations, current)
    assert prompt + reply <= window, (prompt, reply, window)


async def test_three_rounds_of_300_tasks_fit_an_8k_window_newest_first() -> None:
    tasks, observations, current = rounds_of([300, 300, 300], 40, 400)
    prompt, reply, text = await joiner_prompt(8192, "How deep?", tasks, observations, current)
    assert prompt + reply <= 8192
    assert "not shown" in text  # the oldest tasks give way, and the prompt says so
    assert tasks[-1].to_text() in text  # the newest round's last task is there


async def test_a_10000_task_plan_gives_a_prompt_within_the_window() -> None:
    tasks, observations, current = rounds_of([10_000], 10, 50)
    prompt, reply, text = await joiner_prompt(8192, "How deep?", tasks, observations, current)
    assert prompt + reply <= 8192 and len(text) < 100_000


async def test_a_small_plan_is_shown_whole() -> None:
    tasks, observations, current = rounds_of([3, 2], 10, 50)
    _, _, text = await joiner_prompt(8192, "How deep?", tasks, observations, current)
    for task in tasks:
        assert task.to_text() in text and observations[task.id] in text
    assert "not shown" not in text
