"""Test helpers for code built on llmc: scripted LLMs, a scripted OpenAI server, event capture.

Three doubles, from the cheapest to the most realistic:

- :class:`ScriptedLLM` implements the :class:`~llmc.llm.LLM` protocol in memory. It answers
  from a list of replies or a function of the messages, streams each reply in chunks with
  optional delays (its :class:`Pacing`), reports estimated :class:`~llmc.llm.Usage`, and
  records every call::

      llm = ScriptedLLM(["1. search('x')\\n2. join()"], chunk_size=4)
      answer = await llmc.llm.generate(llm, [{"role": "user", "content": "hi"}])
      assert llm.calls[0].messages[0]["content"] == "hi"

- :class:`ScriptedOpenAIServer` is a real HTTP server on loopback that speaks the OpenAI chat
  completions API (streaming and not), so a real client, :class:`llmc.llm.OpenAI` included,
  talks to it unmodified. It records the requests it got and can fail on purpose (429 with
  ``Retry-After``, 500, a stream that breaks off, a slow answer)::

      with ScriptedOpenAIServer(["Paris"]) as server:
          llm = llmc.llm.OpenAI("test", base_url=server.base_url)
          ...
          assert server.requests[0].body["stream"] is True

- :class:`EventRecorder` collects a run's :class:`~llmc.trace.Event` objects: pass it as
  ``on_event``.

Token counts are estimates (:func:`estimate_tokens`: a token per four characters, rounded
up), the same in both doubles, so tests of budgets and usage are deterministic.

Both HTTP servers here, and any fake server a test writes, stand on :class:`LoopbackServer`
and :class:`LoopbackHandler`: a free loopback port, a thread per connection, and a close that
shuts every connection and joins every thread.

The parts, one module each: ``_script`` (replies, their cutting and counting), ``_llm``
(:class:`ScriptedLLM`), ``_http`` (:class:`LoopbackServer`), ``_server``
(:class:`ScriptedOpenAIServer`), ``_events`` (:class:`EventRecorder`).
"""

from ._events import EventRecorder
from ._http import LoopbackHandler, LoopbackServer
from ._llm import ScriptedCall, ScriptedLLM
from ._script import Pacing, Reply, ScriptExhaustedError, estimate_tokens
from ._server import RecordedRequest, ScriptedOpenAIServer

__all__ = [
    "EventRecorder",
    "LoopbackHandler",
    "LoopbackServer",
    "Pacing",
    "RecordedRequest",
    "Reply",
    "ScriptExhaustedError",
    "ScriptedCall",
    "ScriptedLLM",
    "ScriptedOpenAIServer",
    "estimate_tokens",
]
