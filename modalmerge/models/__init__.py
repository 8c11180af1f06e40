"""Models: per-modality encoders and decoders joined by a conditioning method.

``MultiModalModel`` builds any registered condition encoder x conditioning method
x target decoder from names (see ``docs/architecture.md`` §3).
"""

from modalmerge.models.ensemble import ModelEnsemble, load_model
from modalmerge.models.layers import TokenProvenance
from modalmerge.models.model import ModelOutput, MultiModalModel
from modalmerge.models.registry import (
    available,
    register_conditioning,
    register_decoder,
    register_encoder,
)
from modalmerge.models.text import Tokenizer

__all__ = [
    "ModelEnsemble",
    "ModelOutput",
    "MultiModalModel",
    "TokenProvenance",
    "Tokenizer",
    "available",
    "load_model",
    "register_conditioning",
    "register_decoder",
    "register_encoder",
]
