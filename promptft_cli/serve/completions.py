"""POST /v1/completions answers in OpenAI's text_completion shape, so existing OpenAI clients work unchanged."""

from __future__ import annotations

import time
from typing import Any


def completion_response(request_id: str, model: str, outputs: list[dict[str, Any]], truncated: list[bool],
                        prompt_lengths: list[int], n: int, max_input_tokens: int) -> dict[str, Any]:
    """`outputs` hold n generations per prompt, prompt by prompt (choice index = prompt * n + j, as OpenAI)."""
    choices = [{"text": o["generation"], "index": i, "logprobs": None,
                "finish_reason": o.get("finish_reason", "length"), "truncated": cut}
               for i, (o, cut) in enumerate(zip(outputs, truncated))]
    prompt_tokens = sum(min(n_tokens, max_input_tokens) for n_tokens in prompt_lengths)
    completion_tokens = sum(int(o.get("completion_tokens", 0)) for o in outputs)
    return {"id": f"cmpl-{request_id}", "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
