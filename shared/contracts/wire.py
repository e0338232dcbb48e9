"""Fast msgspec codecs for the hot paths of :mod:`.events`, refusing whatever they cannot match exactly.

:func:`shared.contracts.events.decode_tick` runs once per tick in ``predict``,
:func:`shared.contracts.events.encode` once per tick in the ingestor and once per output in ``predict``,
and :func:`shared.contracts.events.decode_output` once per output in ``archive`` and ``broadcast``; the
stdlib ``json`` module with hand validation costs about 10 us an event there (issue 15). The codecs made
here by `msgspec <https://jcristharif.com/msgspec/>`_ (``msgspec.json.Decoder`` of ``msgspec.Struct``
types with ``msgspec.Meta`` bounds, ``msgspec.json.Encoder``) take 1-2 us, but they are *fast paths
only*: each returns ``None`` ("refused") for any input on which it might not give exactly the result of
the checked codec, and the caller then runs the checked codec, which alone decides errors and their
reason texts.

What the fast decoders refuse, and why (tests/unit/test_tick_codec.py checks each case):

- every input that is not ``bytes`` or ``str`` (a ``Mapping``, ``bytearray``, ``memoryview``);
- any field not in the event (``forbid_unknown_fields``): msgspec skips unknown values without the
  checks ``json.loads`` makes (invalid UTF-8, integers over 4,300 digits, nesting depth);
- any msgspec error: ``NaN``/``Infinity`` tokens and numbers beyond float range (``json.loads``
  accepts them; the checked path then says "must be finite"), a lone UTF-16 surrogate (escaped, raw
  in a ``str``, or CESU-encoded in ``bytes``: ``json.loads`` decodes bytes with ``surrogatepass``),
  a byte-order mark (``json.loads`` accepts it in ``bytes``), ``true`` or ``1.0`` for an integer,
  integers beyond 63 bits, a string where a number belongs, a missing field, a value out of bounds.

Where both accept, they agree: msgspec keeps the last of duplicate keys as ``json.loads`` does, parses
floats correctly rounded, turns a JSON integer into a ``float`` for a float field, keeps ``-0.0``,
counts string lengths in code points, and allows the same four whitespace characters. Documented
msgspec behaviour relied on (https://jcristharif.com/msgspec/supported-types.html): non-finite floats
are *encoded* as ``null``, non-ASCII characters are written as UTF-8, a dataclass is decoded without
its ``__init__`` (only a ``__post_init__`` would run) and ignores fields it does not have.
"""

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal, TypeVar, Union

import msgspec
from msgspec import Meta

T = TypeVar("T")

_SCALARS = frozenset({str, int, float, type(None)})
"""Exact value types the fast encoder takes; any other (bool, subclasses, numpy scalars, Decimal,
datetime ...) goes to ``json.dumps``, which alone decides how to write it or which error to raise."""


def tick_wire_decoder(
    *,
    version: int,
    exchange_chars: int,
    symbol_chars: int,
    price_min: float,
    price_max: float,
    quantity_max: float,
    int_max: int,
) -> Callable[[Any], Any]:
    """Return the validating parse of :func:`tick_decoder` alone: JSON to a ``msgspec.Struct`` with the
    tick's fields, raising for whatever that decoder refuses.

    Parameters: the bounds :func:`tick_decoder` documents (all keyword-only). The struct has the attributes
    ``v``, ``type``, ``exchange``, ``symbol``, ``trade_id`` (``None`` when missing or ``null``),
    ``price``, ``quantity``, ``side``, ``event_time_ms``, ``ingest_time_ms``, of the same values
    :func:`tick_decoder` would put in the tick. It is the one parse of ``predict``'s per-tick lane
    (:mod:`shared.serving.lane`), which reads these attributes and builds no tick object.

    Returns
    -------
    callable
        ``decode(raw)`` for ``raw`` of type ``bytes`` or ``str`` *only* (the caller checks: msgspec
        also takes ``bytearray`` and ``memoryview``, which :func:`tick_decoder` refuses). It raises
        ``msgspec.ValidationError``, ``msgspec.DecodeError`` (invalid JSON or UTF-8, a field out of
        bounds or unknown) or ``UnicodeError``/``RecursionError`` exactly where :func:`tick_decoder`
        returns ``None``; then only the checked decoder may say what is wrong.
    """
    count = Annotated[int, Meta(ge=0, le=int_max)]

    class TickWire(msgspec.Struct, forbid_unknown_fields=True, gc=False):
        v: Literal[version]  # type: ignore[valid-type]
        type: Literal["tick"]
        exchange: Annotated[str, Meta(min_length=1, max_length=exchange_chars)]
        symbol: Annotated[str, Meta(min_length=1, max_length=symbol_chars)]
        price: Annotated[float, Meta(ge=price_min, le=price_max)]
        quantity: Annotated[float, Meta(ge=0.0, le=quantity_max)]
        side: Literal["buy", "sell"]
        event_time_ms: count  # type: ignore[valid-type]
        ingest_time_ms: count  # type: ignore[valid-type]
        trade_id: count | None = None  # type: ignore[valid-type]

    return msgspec.json.Decoder(TickWire).decode


def tick_decoder(tick: type[T], **bounds: Any) -> Callable[[Any], T | None]:
    """Return a fast tick decoder: JSON ``bytes``/``str`` to a ``tick`` instance, or ``None`` if refused.

    Parameters
    ----------
    tick : dataclass type
        The class to build, with the eight tick fields ``exchange``, ``symbol``, ``trade_id``,
        ``price``, ``quantity``, ``side``, ``event_time_ms``, ``ingest_time_ms`` annotated
        ``str``, ``str``, ``int | None``, ``float``, ``float``, ``str``, ``int``, ``int`` (the
        ``Tick`` of :mod:`.events`).
    **bounds
        The keyword arguments of :func:`tick_wire_decoder`: ``version`` (the only accepted ``v``);
        ``exchange_chars``, ``symbol_chars`` (longest ``exchange`` and ``symbol``, in code points,
        both at least 1); ``price_min``, ``price_max`` (bounds of ``price``, quote currency, both
        included); ``quantity_max`` (upper bound of ``quantity``, base currency, included; the lower
        bound is 0); ``int_max`` (largest ``trade_id``, ``event_time_ms``, ``ingest_time_ms``, all
        >= 0; times in ms since the epoch, UTC).

    Returns
    -------
    callable
        ``decode(raw)``: the tick if ``raw`` is ``bytes`` or ``str`` holding exactly the tick's
        fields (``trade_id`` may be missing or ``null``), all valid; otherwise ``None``. It never
        raises.

    Notes
    -----
    A valid body is parsed twice: by a ``msgspec.Struct`` with the bounds (which checks it),
    then straight into ``tick`` (msgspec fills a dataclass's slots without its ``__init__``,
    which in a frozen dataclass costs more than both parses together). Both parses read the
    same numbers and strings the same way, and the second ignores ``v`` and ``type``.
    """
    check = tick_wire_decoder(**bounds)
    build = msgspec.json.Decoder(tick).decode

    def decode(raw: Any) -> T | None:
        if type(raw) is not bytes and type(raw) is not str:
            return None
        try:
            w = check(raw)
            if w.trade_id is not None:
                return build(raw)
            # trade_id null or left out (the dataclass has no default for it)
            return tick(exchange=w.exchange, symbol=w.symbol, trade_id=None,  # type: ignore[call-arg]
                        price=w.price, quantity=w.quantity, side=w.side,
                        event_time_ms=w.event_time_ms, ingest_time_ms=w.ingest_time_ms)
        except Exception:  # msgspec errors, UnicodeError, RecursionError: the checked path decides
            return None

    return decode


def tagged_decoder(specs: Mapping[type, Mapping[str, Any]], *, version: int) -> Callable[[Any], Any | None]:
    """Return a fast decoder of several event classes told apart by ``type``, or ``None`` if refused.

    Parameters
    ----------
    specs : mapping of dataclass type to mapping of field name to msgspec type
        At least two event classes (each with a ``type`` class attribute, the tag) and, for every
        field of each, the msgspec type with the bounds the checked decoder enforces (for
        example ``Annotated[float, Meta(ge=1e-12, le=1e12)]``); no field may be optional.
    version : int
        The only accepted ``v``.

    Returns
    -------
    callable
        ``decode(raw)``: an instance of the class named by ``type`` if ``raw`` is ``bytes`` or
        ``str`` holding exactly that class's fields, all within bounds; otherwise ``None``. A
        ``type`` given twice must name the same class both times (msgspec's tagged unions).
        Refusals as for :func:`tick_decoder`; it never raises.
    """
    if len(specs) < 2:
        raise ValueError("a tagged decoder needs two classes at least (one alone does not require its tag)")
    build = {}
    for cls, spec in specs.items():
        wire = msgspec.defstruct(f"{cls.__name__}Wire", [("v", Literal[version]), *spec.items()],
                                 tag_field="type", tag=cls.type, forbid_unknown_fields=True, gc=False)
        build[wire] = msgspec.json.Decoder(cls).decode
    check = msgspec.json.Decoder(Union[tuple(build)]).decode  # noqa: UP007 (a runtime union of classes)

    def decode(raw: Any) -> Any | None:
        if type(raw) is not bytes and type(raw) is not str:
            return None
        try:
            return build[type(check(raw))](raw)  # checked, then parsed into the dataclass (see tick_decoder)
        except Exception:  # msgspec errors, UnicodeError, RecursionError: the checked path decides
            return None

    return decode


def event_encoder(classes: Iterable[type], *, version: int) -> Callable[[Any], bytes | None]:
    """Return a fast encoder of dataclass events: compact UTF-8 JSON, ``v`` and ``type`` first.

    Parameters
    ----------
    classes : iterable of dataclass types
        Event classes with ``__slots__`` naming their fields in order (two at least) and a
        ``type`` class attribute (the ``type`` written).
    version : int
        The ``v`` written.

    Returns
    -------
    callable
        ``encode(event)``: bytes that decode (with ``json.loads``) to the same values as
        ``json.dumps({"v": version, "type": event.type, **fields}, separators=(",", ":"))``;
        non-ASCII characters are written as UTF-8 rather than ``\\u`` escapes and floats in
        msgspec's shortest form (``0.00001`` for ``1e-05``). ``None`` ("refused": use
        ``json.dumps``) for an event of another class, a field whose type is not exactly
        ``str``, ``int``, ``float`` or ``None``, an integer msgspec cannot write (beyond 64 bits),
        a non-finite float (msgspec would write ``null``; ``json.dumps`` with ``allow_nan=False``
        raises ``ValueError``) or a lone surrogate in a string. It never raises.
    """
    enc = msgspec.json.Encoder().encode
    known = {cls: (b'{"v":%d,"type":%s,' % (version, enc(cls.type)), operator.attrgetter(*cls.__slots__))
             for cls in classes}
    if any(len(cls.__slots__) < 2 for cls in known):  # attrgetter of one name returns no tuple
        raise ValueError("every event class needs two fields at least")
    scalars = _SCALARS

    def encode(event: Any) -> bytes | None:
        entry = known.get(type(event))
        if entry is None:
            return None
        head, values = entry
        fields = values(event)
        if not scalars.issuperset(map(type, fields)):
            return None
        try:
            body = enc(event)  # a dataclass: its fields in order, '{"exchange":...}'
        except Exception:  # lone surrogates, huge integers: json.dumps decides
            return None
        if b"null" in body and not all(math.isfinite(x) for x in fields if type(x) is float):
            return None  # msgspec writes NaN and inf as null
        return head + body[1:]

    return encode
