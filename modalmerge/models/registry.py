"""Name registry for encoders, decoders and conditioning methods.

Every building block registers itself under a name with a decorator, so a new
encoder, decoder or method plugs into :class:`~modalmerge.models.MultiModalModel`
without editing the factory::

    @register_encoder("time_series", "my_gru")
    class MyGRUEncoder(nn.Module):
        ...

Lookups of unknown names raise ``ValueError`` listing the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from modalmerge.modalities import MODALITIES, check_modality  # noqa: F401 - re-exported

_ENCODERS: dict[str, dict[str, type]] = {m: {} for m in MODALITIES}
_DECODERS: dict[str, dict[str, type]] = {m: {} for m in MODALITIES}
_CONDITIONING: dict[str, type] = {}

T = TypeVar("T", bound=type)


def _register(table: dict[str, type], name: str, what: str) -> Callable[[T], T]:
    def decorator(cls: T) -> T:
        if name in table and table[name] is not cls:
            raise ValueError(f"{what} {name!r} is already registered as {table[name].__name__}")
        table[name] = cls
        return cls

    return decorator


def register_encoder(modality: str, name: str) -> Callable[[T], T]:
    """Class decorator: register an encoder of ``modality`` under ``name``.

    The class is built as ``cls(input_shape=..., dim=..., n_heads=..., dropout=...,
    **modality_kwargs, **encoder_options)`` and must map a batch of its modality
    to tokens ``(B, n_tokens, dim)`` and implement ``token_provenance(input_shape)``.
    """
    return _register(_ENCODERS[check_modality(modality)], name, f"{modality} encoder")


def register_decoder(modality: str, name: str) -> Callable[[T], T]:
    """Class decorator: register a decoder of ``modality`` under ``name``.

    The class owns ``n_queries`` learned query tokens (``queries(batch_size, ...)``)
    and maps conditioned queries ``(B, n_queries, dim)`` to its modality.
    """
    return _register(_DECODERS[check_modality(modality)], name, f"{modality} decoder")


def register_conditioning(name: str) -> Callable[[T], T]:
    """Class decorator: register a conditioning layer under ``name``.

    The class is built as ``cls(dim=..., n_heads=..., dropout=..., **options)`` and
    is called as ``layer(queries, condition, condition_mask, return_attention)``,
    returning ``(conditioned_queries, attention_or_None)``.
    """
    return _register(_CONDITIONING, name, "conditioning method")


def _lookup(table: dict[str, type], name: str, what: str) -> type:
    _import_builtins()
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; known: {sorted(table)}")
    return table[name]


def get_encoder(modality: str, name: str) -> type:
    """Return the encoder class registered for ``modality`` under ``name``."""
    return _lookup(_ENCODERS[check_modality(modality)], name, f"{modality} encoder")


def get_decoder(modality: str, name: str) -> type:
    """Return the decoder class registered for ``modality`` under ``name``."""
    return _lookup(_DECODERS[check_modality(modality)], name, f"{modality} decoder")


def get_conditioning(name: str) -> type:
    """Return the conditioning layer class registered under ``name``."""
    return _lookup(_CONDITIONING, name, "conditioning method")


def available() -> dict[str, dict[str, list[str]] | list[str]]:
    """Known names: ``{"encoders": {modality: [...]}, "decoders": {...}, "conditioning": [...]}``."""
    _import_builtins()
    return {
        "encoders": {m: sorted(t) for m, t in _ENCODERS.items()},
        "decoders": {m: sorted(t) for m, t in _DECODERS.items()},
        "conditioning": sorted(_CONDITIONING),
    }


def _import_builtins() -> None:
    # the built-in blocks register themselves on import
    from modalmerge.models import conditioning, decoders, encoders  # noqa: F401
