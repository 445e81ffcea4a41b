"""The keys of the policy JSON and of a signed document's payload, written once (pure code).

The policy loader, the document parser, both signers and the docs' key tables (a test
compares them) all use these tables. A key outside them is an error that names it and the
nearest valid key: a misspelt ``"domian"`` or ``"expire"`` would otherwise drop pins or an
expiry without a word, and an update that means "pin nothing" would be installed.
Keys that begin with ``x-`` are extensions: allowed in every object, and ignored.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .errors import PinConfigError

__all__ = [
    "DOCUMENT",
    "DOMAIN",
    "EXTENSION_PREFIX",
    "HOST_GROUP",
    "KEYS",
    "POLICY",
    "ObjectSchema",
    "check_keys",
    "is_extension",
]

EXTENSION_PREFIX = "x-"


@attrs.frozen
class ObjectSchema:
    """The keys one JSON object may have. ``name`` is how messages call the object."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    keys: frozenset[str] = attrs.field(init=False)

    @keys.default
    def _all_keys(self) -> frozenset[str]:
        return frozenset(self.required) | frozenset(self.optional)


DOMAIN = ObjectSchema(
    "domain entry",
    required=("host", "pins"),
    optional=("include_subdomains", "mode", "expires", "report_uri"),
)
# Many hosts sharing one pin list, written once: the compact form of ordinary entries
# (each host is the entry {"host": h, "pins": pins, "include_subdomains": …, "mode": …}).
HOST_GROUP = ObjectSchema(
    "host group", required=("hosts", "pins"), optional=("include_subdomains", "mode")
)
POLICY = ObjectSchema(
    "pin policy",
    # Required: a policy without it pins nothing, which a typo must not achieve. An explicit
    # empty list is the deliberate way to unpin every host.
    required=("domains",),
    optional=("version", "deny", "require_backup", "report_uri", "host_groups"),
)
# A signed document is a policy plus what makes it an update. Its version is required
# (the rollback rule compares it).
DOCUMENT = ObjectSchema(
    "pin document",
    required=("spec_version", "version", "issued_at", "expires", *POLICY.required),
    optional=(
        *(k for k in POLICY.optional if k != "version"),
        "refresh_interval",
        "keys",
    ),
)
KEYS = ObjectSchema("'keys' object", required=("trusted",), optional=("threshold",))
# Not checked by the verifier (DSSE's own fields sit outside the signature): listed so that
# an envelope given where a policy or payload is expected is called what it is.
ENVELOPE = ObjectSchema(
    "signed envelope", required=("payloadType", "payload", "signatures"), optional=()
)

# Where a key of one object is found in another, the message says where it belongs.
_NEIGHBOURS: dict[str, tuple[ObjectSchema, ...]] = {
    DOMAIN.name: (POLICY, DOCUMENT),
    HOST_GROUP.name: (DOMAIN, POLICY, DOCUMENT),
    POLICY.name: (DOMAIN, DOCUMENT, ENVELOPE),
    DOCUMENT.name: (DOMAIN, ENVELOPE),
    KEYS.name: (),
}
_MISSING_HINTS = {
    "domains": " (list the pinned hosts; an explicit [] deliberately unpins every host)",
}


def is_extension(key: object) -> bool:
    """Whether ``key`` names an extension (``x-…``), which every object may carry."""
    return type(key) is str and key.startswith(EXTENSION_PREFIX)


def unknown_key_message(key: object, schema: ObjectSchema, where: str) -> str:
    """Name ``key``, and the valid key it was probably meant to be."""
    text = f"unknown key {key!r} in {where}"
    if isinstance(key, str):
        for other in _NEIGHBOURS[schema.name]:
            if key in other.keys:
                return f"{text}: {key!r} is a key of a {other.name}, not of a {schema.name}"
        close = difflib.get_close_matches(key.lower(), sorted(schema.keys), n=1, cutoff=0.6)
        if close:
            return f"{text}; did you mean {close[0]!r}?"
    valid = ", ".join(sorted(schema.keys))
    return f"{text} (valid keys: {valid}; extension keys begin with {EXTENSION_PREFIX!r})"


def check_keys(
    data: Mapping[Any, Any],
    schema: ObjectSchema,
    where: str | None = None,
    error: Callable[[str], Exception] = PinConfigError,
    *,
    required: bool = True,
) -> None:
    """Raise ``error`` naming the first unknown key of ``data``, or (with ``required``)
    the first missing one.

    Unknown keys are checked first: a misspelt required key is reported as the typo it is.
    """
    place = f"the {schema.name}" if where is None else where
    if not data.keys() <= schema.keys:
        for key in data:
            if key not in schema.keys and not is_extension(key):
                raise error(unknown_key_message(key, schema, place))
    if required:
        for key in schema.required:
            if key not in data:
                raise error(f"{place} is missing {key!r}{_MISSING_HINTS.get(key, '')}")
