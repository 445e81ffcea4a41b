"""Entries whose pins lapse are said out loud, never silently unpinned.

Issue 12, item 4. A policy whose entries all carried a past ``expires`` (copied from an old
policy) was signed, verified ("OK"), installed with an INFO line and, from then on, left
its hosts unpinned without a word. Per-domain expiry is a feature; an entry that is dead
on arrival is a mistake, and one that lapses while in force must be visible.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import ssl
import time
import types
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy, UpdateStatus
from pinsdk._cli import main
from pinsdk._core.timeutil import format_datetime
from pinsdk._demo.loopback import LoopbackTLSServer

from ..signing import ed25519_key, payload, public_pem
from ..updates import UpdateServer

A = "sha256/" + base64.b64encode(hashlib.sha256(b"a").digest()).decode()
B = "sha256/" + base64.b64encode(hashlib.sha256(b"b").digest()).decode()
BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()
STALE = "2020-01-01T00:00:00Z"  # an expiry copied from an old policy


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_static_policy_of_expired_entries_warns_naming_each_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        policy = PinPolicy(
            [
                DomainPins("api.example.com", [A, B], expires=STALE),
                DomainPins("*.cdn.example.com", [A, B], expires=STALE),
                DomainPins("fresh.example.com", [A, B], expires=_now() + timedelta(days=90)),
            ]
        )
    lines = _warnings(caplog)
    assert len(lines) == 2
    assert "'api.example.com' is NOT pinned" in lines[0]
    assert "expired at 2020-01-01T00:00:00Z" in lines[0]
    assert "'*.cdn.example.com' is NOT pinned" in lines[1]
    assert [d.host for d in policy.expired_entries()] == ["api.example.com", "*.cdn.example.com"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        assert policy.pins_for("api.example.com") == frozenset()
    assert _warnings(caplog) == []  # said once, when the policy was built


def test_policy_json_of_expired_entries_warns_too(caplog: pytest.LogCaptureFixture) -> None:
    doc = {"domains": [{"host": h, "pins": [A, B], "expires": STALE} for h in ("a.com", "b.com")]}
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        PinPolicy.from_dict(doc)
    text = caplog.text
    assert "'a.com' is NOT pinned" in text
    assert "'b.com' is NOT pinned" in text


def test_an_entry_that_expires_in_force_is_logged_once_when_first_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    expires = _now() + timedelta(hours=1)
    policy = PinPolicy(
        [
            DomainPins("api.example.com", [A, B], expires=expires),
            DomainPins("**.example.com", [A, BACKUP]),
        ]
    )
    later = expires + timedelta(seconds=1)
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        assert policy.pins_for("api.example.com") == {A, B, BACKUP}
        assert _warnings(caplog) == []
        assert policy.pins_for("api.example.com", now=later) == {A, BACKUP}
        assert policy.pins_for("x.api.example.com", now=later) == {A, BACKUP}
        assert policy.pins_for("api.example.com", now=later) == {A, BACKUP}
    lines = _warnings(caplog)
    assert len(lines) == 1
    assert f"the pins of 'api.example.com' expired at {format_datetime(expires)}" in lines[0]
    assert "no longer pinned" in lines[0]


def test_many_expired_entries_are_counted_not_listed_forever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entries = [{"host": f"h{i}.example.com", "pins": [A, B], "expires": STALE} for i in range(120)]
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        policy = PinPolicy.from_dict({"domains": entries})
    lines = _warnings(caplog)
    assert len(lines) == 51
    assert "'h49.example.com' is NOT pinned" in lines[49]
    assert "70 more entries" in lines[50]
    assert "120 expired entries in all" in lines[50]
    assert len(policy.expired_entries()) == 120


@pytest.mark.anyio
async def test_installing_an_update_with_expired_entries_warns_naming_them(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    signer = ed25519_key()
    stale = [{"host": h, "pins": [A, B], "expires": STALE} for h in ("127.0.0.1", "localhost")]
    document = pinsdk.sign_envelope(payload(5, stale), signer)
    source = pinsdk.DynamicPins(
        UpdateServer(serve, api_cert).url,
        [public_pem(signer)],
        verify=device_trust(),
        auto_refresh=False,
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        result = await source.apply_document(document)
    assert result.status is UpdateStatus.UPDATED  # a valid document; but not a silent one
    text = caplog.text
    assert "'127.0.0.1' is NOT pinned" in text
    assert "'localhost' is NOT pinned" in text
    assert "policy (version 5)" in text


@pytest.mark.anyio
async def test_a_handshake_after_an_entry_lapsed_warns_once_and_stats_count_it(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real handshakes; only the policy's clock is moved past the entry's expiry."""
    server = serve(api_cert)
    policy = PinPolicy(
        [
            DomainPins("127.0.0.1", [pins["leaf"], BACKUP], expires=_now() + timedelta(hours=1)),
            DomainPins("localhost", [pins["leaf"], BACKUP]),
        ]
    )

    async def one_request() -> dict[str, int]:
        async with pinsdk.AsyncClient(pins=policy, verify=device_trust()) as client:
            assert (await client.get(server.url())).status_code == 200
            return client.stats()

    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        assert (await one_request())["entries_expired"] == 0
        assert _warnings(caplog) == []
        later = time.time() + 2 * 3600
        monkeypatch.setattr("pinsdk._core.policy.time", types.SimpleNamespace(time=lambda: later))
        assert (await one_request())["entries_expired"] == 1
        assert (await one_request())["entries_expired"] == 1
    lines = _warnings(caplog)
    assert len(lines) == 1
    assert "the pins of '127.0.0.1' expired at" in lines[0]
    assert "'127.0.0.1' is no longer pinned" in lines[0]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert main(["keygen", "--out", "k"]) == 0
    return tmp_path


def _write_policy(workdir: Path, expiries: dict[str, str | None]) -> None:
    domains: list[dict[str, Any]] = []
    for host, expires in expiries.items():
        entry: dict[str, Any] = {"host": host, "pins": [A, B]}
        if expires is not None:
            entry["expires"] = expires
        domains.append(entry)
    (workdir / "policy.json").write_text(json.dumps({"domains": domains}))


SIGN = ["sign", "policy.json", "--key", "k", "--version", "5", "--expires", "30d"]


def test_pinsdk_sign_refuses_entries_already_expired_naming_them(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_policy(workdir, {"a.example.com": STALE, "b.example.com": STALE})
    capsys.readouterr()
    assert main([*SIGN, "--out", "doc.json"]) == 2
    err = capsys.readouterr().err
    assert "2 entries have already expired" in err
    assert "'a.example.com' (expires 2020-01-01T00:00:00Z)" in err
    assert "'b.example.com'" in err
    assert "--allow-expired-entries" in err
    assert "pinsdk: warning" not in err  # said once, by the command
    assert not (workdir / "doc.json").exists()
    assert main([*SIGN, "--allow-expired-entries", "--out", "doc.json"]) == 0
    err = capsys.readouterr().err
    assert "warning: signing entries that have expired already: 'a.example.com'" in err


def test_pinsdk_sign_warns_about_entries_lapsing_before_the_document(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    soon = format_datetime(_now() + timedelta(days=10))
    _write_policy(workdir, {"a.example.com": soon, "b.example.com": None})
    capsys.readouterr()
    assert main([*SIGN, "--out", "doc.json"]) == 0
    err = capsys.readouterr().err
    assert "expire before the document does" in err
    assert f"'a.example.com' (expires {soon})" in err
    assert "b.example.com" not in err


def test_pinsdk_verify_lists_expired_and_soon_to_expire_entries(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    soon = format_datetime(_now() + timedelta(days=10))
    later = format_datetime(_now() + timedelta(days=200))
    _write_policy(workdir, {"dead.example.com": STALE, "soon.example.com": soon, "ok.com": later})
    assert main([*SIGN, "--allow-expired-entries", "--out", "doc.json"]) == 0
    capsys.readouterr()
    assert main(["verify", "doc.json", "--trusted-key", "k.pub"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "OK: version 5, 3 domains (1 expired), 0 denied pins" in out
    assert "EXPIRED: 'dead.example.com' expired at 2020-01-01T00:00:00Z: it pins nothing" in out
    assert f"EXPIRES SOON: 'soon.example.com' expires at {soon}" in out
    assert "ok.com" not in out
    assert "pinsdk: warning" not in captured.err
    assert main(["verify", "doc.json", "--trusted-key", "k.pub", "--warn-days", "365"]) == 0
    assert "EXPIRES SOON: 'ok.com'" in capsys.readouterr().out
