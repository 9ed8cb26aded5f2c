"""Latency and price profiles of hosted models, for the simulated LLM server.

A reply takes ``ttft + prompt_tokens / prefill_rate`` seconds to its first token, then
``1 / tokens_per_second`` per further token. Cost is ``prompt_tokens * input_price +
completion_tokens * output_price`` with prices in US dollars per million tokens.

Sources (rounded; both drift, so treat them as one plausible point, not a measurement):

- Output speed and time to first token: the medians that Artificial Analysis
  (artificialanalysis.ai, "LLM API providers leaderboard") published in the second half of
  2024 for short prompts: GPT-4o mini about 85 tokens/s and 0.45 s, GPT-4o (2024-08-06)
  about 95 tokens/s and 0.45 s, Llama 3.1 70B Instruct on Together AI (Turbo) about
  100 tokens/s and 0.40 s, and Llama 3 70B on Groq about 275 tokens/s and 0.25 s.
- Prefill: providers do not publish prompt-processing rates. The rates below are an
  assumption chosen so that a 10,000-token prompt adds 0.4-1 s to the first token, which is
  the gap between the short- and long-prompt first-token times on the same leaderboard.
- Prices: the providers' list prices in late 2024: OpenAI GPT-4o mini $0.15 / $0.60 and
  GPT-4o $2.50 / $10.00 per million input / output tokens; Together AI Llama 3.1 70B Turbo
  $0.88 / $0.88; Groq Llama 3 70B $0.59 / $0.79. Cached-prompt discounts are not modelled.

``client_model`` is the model name the contenders' clients send. The simulator applies its
own profile to every request whatever the name says; the name matters only to clients that
look models up by name (LlamaIndex's ``OpenAI`` refuses names it does not know).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROFILES", "Profile"]


@dataclass(frozen=True, slots=True)
class Profile:
    """How fast a hosted model answers, and what it costs.

    Attributes:
        name: the profile's name, e.g. ``"gpt-4o-mini"``.
        ttft: seconds to the first token of a reply to a short prompt.
        prefill_rate: prompt tokens per second read before the first token.
        tokens_per_second: output tokens per second after the first.
        input_price: US dollars per million prompt tokens.
        output_price: US dollars per million completion tokens.
        client_model: the model name the contenders' clients send.
        source: where the numbers come from, in a few words.
    """

    name: str
    ttft: float
    prefill_rate: float
    tokens_per_second: float
    input_price: float
    output_price: float
    client_model: str
    source: str = ""

    def first_token_delay(self, prompt_tokens: int) -> float:
        """Seconds from the request to the first token of the reply."""
        return self.ttft + prompt_tokens / self.prefill_rate

    def generation_time(self, completion_tokens: int) -> float:
        """Seconds from the first token to the last."""
        return max(0, completion_tokens - 1) / self.tokens_per_second

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """US dollars for one call, or for totals of several."""
        return (prompt_tokens * self.input_price + completion_tokens * self.output_price) / 1e6


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            "gpt-4o-mini",
            0.45,
            20_000,
            85,
            0.15,
            0.60,
            "gpt-4o-mini",
            "Artificial Analysis H2 2024; OpenAI list price",
        ),
        Profile(
            "gpt-4o",
            0.45,
            15_000,
            95,
            2.50,
            10.00,
            "gpt-4o",
            "Artificial Analysis H2 2024; OpenAI list price (2024-08-06)",
        ),
        Profile(
            "llama-3-70b",
            0.40,
            12_000,
            100,
            0.88,
            0.88,
            "gpt-4o-mini",
            "Llama 3.1 70B Turbo on Together AI: Artificial Analysis H2 2024; list price",
        ),
        Profile(
            "llama-3-70b-groq",
            0.25,
            25_000,
            275,
            0.59,
            0.79,
            "gpt-4o-mini",
            "Llama 3 70B on Groq: Artificial Analysis H2 2024; list price",
        ),
        # For tests and smoke runs: every delay a few milliseconds.
        Profile("instant", 0.002, 10_000_000, 20_000, 0.15, 0.60, "gpt-4o-mini", "none"),
    )
}
