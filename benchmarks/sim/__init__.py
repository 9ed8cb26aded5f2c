"""The LLM and tool simulator: an OpenAI-compatible server that answers each framework's
requests from gold decompositions, with the latency and prices of real hosted models.

- :mod:`~benchmarks.sim.profiles`: latency and price profiles (sources in its docstring);
- :mod:`~benchmarks.sim.tokens`: one token count for every framework's requests;
- :mod:`~benchmarks.sim.world`: the simulated tools (outputs, latencies, calls);
- :mod:`~benchmarks.sim.workloads`: questions and their gold decompositions;
- :mod:`~benchmarks.sim.policy`: which framework and role sent a request, and the reply;
- :mod:`~benchmarks.sim.server`: the HTTP server (:class:`Simulator`).
"""

from .policy import Policy, PolicyError, Reply
from .profiles import PROFILES, Profile
from .server import LLMCall, Simulator
from .tokens import Tokenizer, get_tokenizer
from .workloads import WORKLOADS, GoldTask, Question, Workload, load_workload
from .world import World

__all__ = [
    "PROFILES",
    "WORKLOADS",
    "GoldTask",
    "LLMCall",
    "Policy",
    "PolicyError",
    "Profile",
    "Question",
    "Reply",
    "Simulator",
    "Tokenizer",
    "Workload",
    "World",
    "get_tokenizer",
    "load_workload",
]
