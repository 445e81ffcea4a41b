"""Errors raised by pinsdk that carry no I/O dependency.

Every SDK error subclasses :class:`PinningError`. Errors raised while a request is
in flight (see :mod:`pinsdk.request_errors`) also subclass the fitting httpx error.
"""

from __future__ import annotations


class PinningError(Exception):
    """Base class of every error raised by pinsdk."""


class PinConfigError(PinningError, ValueError):
    """A pin, host pattern, policy or client setting is invalid.

    Raised at construction time, never during a request; the message names the
    offending value.
    """
