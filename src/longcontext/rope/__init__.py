"""RoPE scaling: stretch a model past its trained window, for transformers and vLLM.

``RopeScaling`` is the typed configuration (``for_target`` builds one from a model);
``read_model_rope`` reads a model's RoPE facts; ``freqs`` holds the inverse-frequency math.
"""

from __future__ import annotations

from longcontext.rope.model import SUPPORTED_METHODS, ModelRope, read_model_rope
from longcontext.rope.scaling import RopeScaling

__all__ = ["SUPPORTED_METHODS", "ModelRope", "RopeScaling", "read_model_rope"]
