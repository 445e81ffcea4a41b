"""Issue 16, library: settings that would be silently ignored are refused, real failures are
WARNINGs, flush_reports() says whether reports arrived, and a DynamicPins used without
``async with`` says that nothing refreshes it."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

import httpx
import pytest
import trustme

import pinsdk
from pinsdk import DomainPins, PinPolicy
from pinsdk._demo.loopback import LoopbackTLSServer

from .signing import public_pem
from .updates import UpdateServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def policy(pins: dict[str, str]) -> PinPolicy:
    return PinPolicy([DomainPins("localhost", [pins["intermediate"], pins["leaf"]])])


def test_verify_with_a_transport_is_refused(policy: PinPolicy, ca: trustme.CA) -> None:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    transport = pinsdk.PinnedTransport(policy, verify=ctx)
    with pytest.raises(pinsdk.PinConfigError, match=r"pass verify= to pinsdk\.PinnedTransport"):
        pinsdk.AsyncClient(pins=policy, verify=ctx, transport=transport)
    pinsdk.AsyncClient(pins=policy, transport=transport)  # the transport's verify decides


def test_other_pins_on_the_transport_are_refused(policy: PinPolicy, pins: dict[str, str]) -> None:
    other = PinPolicy([DomainPins("localhost", [pins["root"], pins["leaf"]])])
    with pytest.raises(pinsdk.PinConfigError, match="pins= and the pins of the PinnedTransport"):
        pinsdk.AsyncClient(pins=policy, transport=pinsdk.PinnedTransport(other))
    with pytest.raises(pinsdk.PinConfigError, match=r"mounts\['https://api'\]"):
        pinsdk.AsyncClient(pins=policy, mounts={"https://api": pinsdk.PinnedTransport(other)})
    same = PinPolicy.from_dict(policy.to_dict())  # an equal policy is the same pins
    pinsdk.AsyncClient(pins=policy, transport=pinsdk.PinnedTransport(same))


def test_help_documents_pins_and_verify() -> None:
    doc = pinsdk.AsyncClient.__doc__ or ""
    assert "``pins`` is the pin source" in doc
    assert "``verify`` is the trust" in doc


async def test_a_dynamic_pins_never_entered_warns_once(
    serve: Callable[..., LoopbackTLSServer],
    api_cert: trustme.LeafCert,
    ca: trustme.CA,
    updates: UpdateServer,
    policy: PinPolicy,
    signer: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = serve(api_cert)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    pins = pinsdk.DynamicPins(updates.url, [public_pem(signer)], bootstrap=policy, verify=ctx)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        async with pinsdk.AsyncClient(pins=pins, verify=ctx) as client:
            assert (await client.get(server.url("localhost"))).status_code == 200
            assert (await client.get(server.url("localhost"))).status_code == 200
    idle = [r for r in caplog.records if "was never entered" in r.getMessage()]
    assert len(idle) == 1
    assert "async with" in idle[0].getMessage()
    caplog.clear()
    ctx = ssl.create_default_context()  # one context per pin source
    ca.configure_trust(ctx)
    entered = pinsdk.DynamicPins(updates.url, [public_pem(signer)], bootstrap=policy, verify=ctx)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        async with entered, pinsdk.AsyncClient(pins=entered, verify=ctx) as client:
            assert (await client.get(server.url("localhost"))).status_code == 200
    assert not [r for r in caplog.records if "was never entered" in r.getMessage()]


async def test_an_update_url_answering_404_is_a_warning(
    updates: UpdateServer,
    ca: trustme.CA,
    policy: PinPolicy,
    signer: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    updates.reply = (404, [], b"no such file")
    pins = pinsdk.DynamicPins(
        updates.url,
        [public_pem(signer)],
        bootstrap=policy,
        verify=ctx,
        auto_refresh=False,  # type: ignore[arg-type]
    )
    with caplog.at_level(logging.INFO, logger="pinsdk"):
        result = await pins.refresh()
    assert result.status is pinsdk.UpdateStatus.FAILED
    (line,) = [r for r in caplog.records if "pin update from" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "HTTP 404" in line.getMessage()


async def test_a_network_failure_warns_once_it_repeats(
    ca: trustme.CA, policy: PinPolicy, signer: object, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:
        dead = f"https://127.0.0.1:{s.getsockname()[1]}/pins.json"
    pins = pinsdk.DynamicPins(
        dead,
        [public_pem(signer)],
        bootstrap=policy,
        auto_refresh=False,
        timeout=2,  # type: ignore[arg-type]
    )
    with caplog.at_level(logging.INFO, logger="pinsdk"):
        for _ in range(3):
            assert (await pins.refresh()).status is pinsdk.UpdateStatus.FAILED
    levels = [r.levelno for r in caplog.records if "pin update from" in r.getMessage()]
    assert levels == [logging.INFO, logging.INFO, logging.WARNING]


def test_pin_validation_error_shapes() -> None:
    assert isinstance(httpx.ConnectError("x"), Exception)  # (shapes are checked on real TLS
    # in test_tls_pinning: served/expected/denied pins are tuples, the message has the port)
