"""llmc's benchmarks: workloads, an LLM and tool simulator, peer frameworks, reports.

Not shipped in the wheel. ``python -m benchmarks`` runs llmc side by side with a ReAct agent,
a parallel-function-calling agent and LlamaIndex's LLMCompiler pack against a simulated
OpenAI-compatible server (see :mod:`benchmarks.compare`); the other files are standalone
scripts (``python benchmarks/scheduler.py`` ...).
"""
