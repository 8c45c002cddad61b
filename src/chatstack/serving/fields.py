"""Turn raw request tensors into validated Python values.

Pure functions over numpy arrays, so they are tested without a server. Every
error is a `ValueError` whose message starts with the offending field's name;
the Triton adapters turn it into INVALID_ARG.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

Tensors = Mapping[str, "np.ndarray | None"]


def _single(tensors: Tensors, name: str) -> object | None:
    array = tensors.get(name)
    if array is None:
        return None
    if array.size != 1:
        raise ValueError(f"{name} must hold exactly one value per request, got shape {list(array.shape)}")
    return array.reshape(-1)[0]


def decode_utf8(value: object, name: str) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, (bytes, np.bytes_)):
        raise ValueError(f"{name} must be a UTF-8 string, got {type(value).__name__}")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name} is not valid UTF-8 (byte {exc.start}: {bytes(value)[exc.start:exc.start + 1]!r})") from None


def required_text(tensors: Tensors, name: str) -> str:
    value = _single(tensors, name)
    if value is None:
        raise ValueError(f"{name} is required")
    text = decode_utf8(value, name)
    if not text.strip():
        raise ValueError(f"{name} must not be empty")
    return text


def optional_text(tensors: Tensors, name: str) -> str | None:
    value = _single(tensors, name)
    return None if value is None else decode_utf8(value, name)


def optional_int(tensors: Tensors, name: str, low: int, high: int | None = None) -> int | None:
    value = _single(tensors, name)
    if value is None:
        return None
    number = int(value)
    if number < low or (high is not None and number > high):
        allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {allowed}, got {number}")
    return number


def optional_float(tensors: Tensors, name: str) -> float | None:
    value = _single(tensors, name)
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number}")
    return number


def optional_bool(tensors: Tensors, name: str) -> bool | None:
    value = _single(tensors, name)
    return None if value is None else bool(value)


def text_list(tensors: Tensors, name: str) -> tuple[str, ...]:
    array = tensors.get(name)
    if array is None:
        return ()
    words = tuple(decode_utf8(v, name) for v in array.reshape(-1))
    if any(w == "" for w in words):
        raise ValueError(f"{name} must not contain empty strings")
    return words
