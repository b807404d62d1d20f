"""What the Anthropic adapter needs to know per Claude model.

The Messages API requires ``max_tokens`` on every request, while the OpenAI contract treats an
unset ``max_tokens`` as "up to the model's limit". So when the caller gives none the adapter
sends the model's documented maximum output (Anthropic "Models overview", output limits; the
same defaults the Vercel AI SDK uses). Unknown models get 4096, which every Claude model
accepts. Too large a value is a 400 from the API, so the table only lists limits we are sure of.

| model id prefix    | default max_tokens | native structured output | rejects sampling params |
|--------------------|-------------------:|:------------------------:|:-----------------------:|
| claude-opus-4-7    | 128000 | yes | yes |
| claude-opus-4-6    | 128000 | yes | no  |
| claude-sonnet-4-6  |  64000 | yes | no  |
| claude-opus-4-5    |  64000 | yes | no  |
| claude-sonnet-4-5  |  64000 | yes | no  |
| claude-haiku-4-5   |  64000 | yes | no  |
| claude-opus-4-1    |  32000 | yes | no  |
| claude-opus-4      |  32000 | no  | no  |
| claude-sonnet-4    |  64000 | no  | no  |
| claude-3-7-sonnet  |  64000 | no  | no  |
| claude-3-5-sonnet  |   8192 | no  | no  |
| claude-3-5-haiku   |   8192 | no  | no  |
| claude-3-opus / claude-3-sonnet / claude-3-haiku | 4096 | no | no |
| anything else      |   4096 | no  | no  |

"Rejects sampling params": the API answers 400 to temperature, top_p and top_k.
"Native structured output" is ``output_config.format`` (JSON schema constrained decoding,
generally available since the structured-outputs launch for the 4.1+/4.5 generation); models
without it get JSON mode and schemas through a forced tool instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Per-model facts the encoder uses (mirrors the table in this module's docstring)."""

    max_output_tokens: int
    structured_output: bool = False
    rejects_sampling: bool = False


UNKNOWN = ModelInfo(max_output_tokens=4096)

# Longest prefixes first so `claude-opus-4-5` wins over `claude-opus-4`.
_TABLE: tuple[tuple[str, ModelInfo], ...] = (
    ("claude-opus-4-7", ModelInfo(128000, structured_output=True, rejects_sampling=True)),
    ("claude-opus-4-6", ModelInfo(128000, structured_output=True)),
    ("claude-sonnet-4-6", ModelInfo(64000, structured_output=True)),
    ("claude-opus-4-5", ModelInfo(64000, structured_output=True)),
    ("claude-sonnet-4-5", ModelInfo(64000, structured_output=True)),
    ("claude-haiku-4-5", ModelInfo(64000, structured_output=True)),
    ("claude-opus-4-1", ModelInfo(32000, structured_output=True)),
    ("claude-opus-4", ModelInfo(32000)),
    ("claude-sonnet-4", ModelInfo(64000)),
    ("claude-3-7-sonnet", ModelInfo(64000)),
    ("claude-3-5-sonnet", ModelInfo(8192)),
    ("claude-3-5-haiku", ModelInfo(8192)),
    ("claude-3-opus", ModelInfo(4096)),
    ("claude-3-sonnet", ModelInfo(4096)),
    ("claude-3-haiku", ModelInfo(4096)),
)

_cache: dict[str, ModelInfo] = {}


def model_info(model: str) -> ModelInfo:
    """The table row for a model id (dated snapshots match their alias prefix)."""
    found = _cache.get(model)
    if found is not None:
        return found
    info = UNKNOWN
    for prefix, row in _TABLE:
        rest = model[len(prefix) :]
        # `claude-opus-4-5` must not match `claude-opus-4-50`, but must match a dated snapshot.
        if model.startswith(prefix) and (not rest or rest[0] in "-@:"):
            info = row
            break
    if len(_cache) < 1024:
        _cache[model] = info
    return info
