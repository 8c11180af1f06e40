"""Name registry for encoders, decoders and conditioning methods.

Every building block registers itself under a name with a decorator, so a new
encoder, decoder or method plugs into :class:`~modalmerge.models.MultiModalModel`
without editing the factory. A plain ``nn.Module`` will do::

    @register_encoder("time_series", "my_gru")
    class MyGRUEncoder(nn.Module):
        def __init__(self, input_shape, dim, hidden=32):  # hidden: an encoder option
            super().__init__()
            self.gru = nn.GRU(input_shape[1], hidden, batch_first=True)
            self.proj = nn.Linear(hidden, dim)

        def forward(self, x):  # (B, T, channels) -> tokens (B, T, dim)
            return self.proj(self.gru(x)[0])

        def token_provenance(self, input_shape):
            return TokenProvenance("time", input_shape[-2])

Lookups of unknown names raise ``ValueError`` listing the known ones; so does
an option a block does not take (:func:`build`). A block defined outside the
package is known once its module is imported: in the workflow, list the module
under ``plugins:`` in the config (:func:`import_plugins`); in Python, import it
before :meth:`MultiModalModel.load <modalmerge.models.MultiModalModel.load>`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TypeVar

from torch import nn

from modalmerge.modalities import MODALITIES, check_modality  # noqa: F401 - re-exported

_ENCODERS: dict[str, dict[str, type]] = {m: {} for m in MODALITIES}
_DECODERS: dict[str, dict[str, type]] = {m: {} for m in MODALITIES}
_CONDITIONING: dict[str, type] = {}

T = TypeVar("T", bound=type)


def _register(
    table: dict[str, type], name: str, what: str, methods: tuple[str, ...] = ()
) -> Callable[[T], T]:
    def decorator(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"{what} {name!r} must be a torch.nn.Module class, got {cls!r}")
        missing = [m for m in methods if not callable(getattr(cls, m, None))]
        if missing:
            lacks = ", ".join(f"{m}()" for m in missing)
            raise TypeError(f"{what} {name!r} ({cls.__name__}) lacks {lacks}")
        if name in table and table[name] is not cls:
            raise ValueError(f"{what} {name!r} is already registered as {table[name].__name__}")
        table[name] = cls
        return cls

    return decorator


def register_encoder(modality: str, name: str) -> Callable[[T], T]:
    """Class decorator: register an encoder of ``modality`` under ``name``.

    The class (an ``nn.Module``) is built as ``cls(input_shape, dim, **settings,
    **encoder_options)``: ``input_shape`` is the per-sample shape, ``settings``
    are those of the model's settings ``n_heads``, ``dropout`` and, by modality,
    ``vocab_size`` (text) or ``n_numeric`` and ``categorical_cardinalities``
    (tabular) that ``__init__`` names (a ``**kwargs`` catch-all gets them all),
    and ``encoder_options`` must be parameters it names (:func:`build`).
    ``forward(x)`` maps a batch of the modality to tokens ``(B, n_tokens, dim)``;
    ``token_provenance(input_shape)`` says where each token comes from. An
    optional ``padding_mask(x)`` returns ``(B, n_tokens)`` bool, True at real
    tokens (without it every token is real).
    """
    return _register(
        _ENCODERS[check_modality(modality)], name, f"{modality} encoder", ("token_provenance",)
    )


def register_decoder(modality: str, name: str) -> Callable[[T], T]:
    """Class decorator: register a decoder of ``modality`` under ``name``.

    Built like an encoder (``cls(output_shape, dim, **settings, **decoder_options)``,
    see :func:`register_encoder`). It owns ``n_queries`` learned query tokens,
    returned by ``queries(batch_size, target=None, time_offset=None)`` as
    ``(B, n_queries, dim)``; ``forward(conditioned)`` maps the conditioned queries
    to its modality; ``query_provenance()`` says what each query stands for.
    """
    return _register(
        _DECODERS[check_modality(modality)],
        name,
        f"{modality} decoder",
        ("queries", "query_provenance"),
    )


def register_conditioning(name: str) -> Callable[[T], T]:
    """Class decorator: register a conditioning layer under ``name``.

    The class is built as ``cls(dim=..., n_heads=..., dropout=..., **options)``
    (``n_heads`` and ``dropout`` only when ``__init__`` names them; so are
    ``n_queries`` and ``n_condition``, the decoder's query count and the
    encoder's token count, for a method that learns a weight per pair such as
    ``spatial_mix``; ``options`` must be parameters it names) and is called as ``layer(queries, condition,
    condition_mask, return_attention)``, returning ``(conditioned_queries,
    attention_or_None)``.
    """
    return _register(_CONDITIONING, name, "conditioning method")


# ------------------------------------------------------------------ building


def _parameters(cls: type) -> tuple[set[str], bool]:
    """Keyword parameters ``cls(...)`` takes, following ``**kwargs`` handed to a base class.

    Returns ``(names, open_ended)``; ``open_ended`` is True when a ``**kwargs``
    catch-all leads nowhere named (the class takes any keyword).
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (nn.Module, object):
            return names, True
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names |= {p.name for p in params if p.kind in kinds and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names, False
    return names, True  # pragma: no cover - every class ends at object


def known_options(cls: type, settings: Iterable[str] = (), positional: int = 0) -> list[str]:
    """The options a block takes: its keyword parameters less the model's own settings.

    ``positional`` leading parameters (``input_shape, dim``) and any names in
    ``cls.fixed_options`` (set by a subclass, e.g. the mixer of ``gru``) are left out.
    """
    names, _ = _parameters(cls)
    leading: list[str] = []
    for klass in cls.__mro__:  # the leading positional names of the first __init__
        if "__init__" in vars(klass):
            params = list(inspect.signature(klass.__init__).parameters)[1:]
            leading = params[:positional]
            break
    fixed = set(getattr(cls, "fixed_options", ()))
    return sorted(names - set(settings) - set(leading) - fixed)


def build(
    cls: type,
    what: str,
    args: tuple = (),
    settings: dict | None = None,
    options: dict | None = None,
):
    """Build ``cls(*args, **settings, **options)`` checking ``options`` first.

    ``settings`` are the model's plumbing (``n_heads``, ``dropout``, ``vocab_size``,
    ...): each is passed only when ``cls`` names it, or takes ``**kwargs``.
    ``options`` are the user's: a name ``cls`` does not take raises
    ``ValueError("<what>: unknown option 'x'; known: a, b")``, and a name that is
    one of the model's settings raises too (set it on the model).
    """
    settings, options = dict(settings or {}), dict(options or {})
    names, open_ended = _parameters(cls)
    for key in options:
        if key in settings:
            raise ValueError(
                f"{what}: {key!r} is a model setting ({key}={settings[key]!r}), not an option"
            )
    if not open_ended:
        known = known_options(cls, settings, len(args))
        for key in options:
            if key not in known:
                raise ValueError(
                    f"{what}: unknown option {key!r}; known: {', '.join(known) or '(none)'}"
                )
        settings = {k: v for k, v in settings.items() if k in names}
    return cls(*args, **settings, **options)


def import_plugins(modules: Iterable[str] | None) -> list[ModuleType]:
    """Import third-party modules that register blocks (the config's ``plugins:``).

    Parameters
    ----------
    modules : iterable of str
        Importable module names (``my_lab.encoders``); importing one runs its
        ``@register_encoder`` / ``@register_decoder`` / ``@register_conditioning``
        decorators. None or empty imports nothing.

    Raises
    ------
    ValueError
        A name that is not a string or a module that cannot be imported.
    """
    if isinstance(modules, str):
        modules = [modules]
    imported = []
    for name in modules or ():
        if not isinstance(name, str) or not name:
            raise ValueError(f"plugins must be module names (strings), got {name!r}")
        try:
            imported.append(importlib.import_module(name))
        except ImportError as err:
            raise ValueError(f"plugin module {name!r} cannot be imported: {err}") from err
    return imported


def _lookup(table: dict[str, type], name: str, what: str) -> type:
    _import_builtins()
    if name not in table:
        raise ValueError(
            f"unknown {what} {name!r}; known: {sorted(table)} (a block from outside "
            "modalmerge is known once its module is imported: the config's plugins:)"
        )
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
    from modalmerge.models import conditioning, decoders, diffusion, encoders  # noqa: F401
