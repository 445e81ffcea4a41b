"""``pinsdk check``: real TLS handshakes on loopback, judged like a client would."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trustme

import pinsdk
from pinsdk._cli import main
from pinsdk._core.policy import PinPolicy
from pinsdk._core.preflight import default_hosts, policy_findings
from pinsdk._demo.loopback import LoopbackTLSServer

from .conftest import pin_of
from .signing import ed25519_key, payload, public_pem


class Checker:
    """Servers on loopback, policy files, and ``pinsdk check`` run in-process."""

    def __init__(
        self,
        capsys: pytest.CaptureFixture[str],
        serve: Callable[..., LoopbackTLSServer],
        pins: dict[str, str],
        tmp: Path,
        ca: trustme.CA,
        rogue_ca: trustme.CA,
    ) -> None:
        self.capsys = capsys
        self.serve = serve
        self.pins = pins
        self.tmp = tmp
        # A CA bundle with the API's CA only, and one that also trusts the rogue CA.
        self.ca = tmp / "ca.pem"
        self.ca.write_bytes(ca.cert_pem.bytes())
        self.both = tmp / "both.pem"
        self.both.write_bytes(ca.cert_pem.bytes() + rogue_ca.cert_pem.bytes())

    def policy(self, pins: list[str] | None = None, host: str = "localhost") -> str:
        path = self.tmp / f"policy-{len(list(self.tmp.iterdir()))}.json"
        pins = pins or [self.pins["intermediate"], self.pins["root"]]
        path.write_text(json.dumps({"domains": [{"host": host, "pins": pins}]}))
        return str(path)

    def start(self, cert: trustme.LeafCert) -> LoopbackTLSServer:
        return self.serve(cert)

    def run(self, *argv: str, trust: Path | None = None) -> tuple[int, str, str]:
        code = main(["check", *argv, "--ca-file", str(trust or self.ca)])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str, trust: Path | None = None) -> tuple[int, list[dict[str, Any]]]:
        code, out, _ = self.run(*argv, "--json", trust=trust)
        return code, json.loads(out)


@pytest.fixture
def check(
    capsys: pytest.CaptureFixture[str],
    serve: Callable[..., LoopbackTLSServer],
    pins: dict[str, str],
    tmp_path: Path,
    ca: trustme.CA,
    rogue_ca: trustme.CA,
) -> Checker:
    return Checker(capsys, serve, pins, tmp_path, ca, rogue_ca)


def test_accepted_with_a_handshake_only(check: Checker, api_cert: trustme.LeafCert) -> None:
    server = check.start(api_cert)
    target = f"localhost:{server.port}"
    code, out, _ = check.run(check.policy(), "--target", target)
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith(target))
    assert "127.0.0.1" in line
    assert "accepted" in line
    assert check.pins["intermediate"] in line
    assert "1 of 1 servers would be accepted" in out
    assert server.wait_idle()
    assert server.handshakes_completed == 1
    assert server.received == b""  # no HTTP request: a handshake only
    assert not server.requests


def test_json_shape(check: Checker, api_cert: trustme.LeafCert) -> None:
    server = check.start(api_cert)
    policy = check.policy(host="127.0.0.1")
    code, reports = check.json(policy, "--target", f"127.0.0.1:{server.port}")
    assert code == 0
    assert isinstance(reports, list)
    assert len(reports) == 1
    (report,) = reports
    assert report["host"] == "127.0.0.1"
    assert report["port"] == server.port
    assert report["ok"] is True
    assert report["matched"] == [check.pins["intermediate"], check.pins["root"]]
    assert report["backup_only"] is False
    assert report["leaf_pins"] == []
    assert report["spare"] == []
    assert any("no spare pin" in w for w in report["warnings"])


def test_refused_by_the_pins_exits_1(check: Checker, rogue_cert: trustme.LeafCert) -> None:
    target = f"localhost:{check.start(rogue_cert).port}"
    code, out, _ = check.run(check.policy(), "--target", target, trust=check.both)
    assert code == 1
    assert "REFUSED" in out
    assert "refused: no key of the verified chain matches the pins" in out
    assert "0 of 1 servers would be accepted" in out
    code, reports = check.json(check.policy(), "--target", target, trust=check.both)
    assert code == 1
    assert reports[0]["ok"] is False
    assert reports[0]["matched"] == []


def test_chain_a_client_would_not_verify_is_refused(
    check: Checker, rogue_cert: trustme.LeafCert
) -> None:
    """--ca-file: only those anchors. The rogue CA is not among them."""
    target = f"localhost:{check.start(rogue_cert).port}"
    code, out, _ = check.run(check.policy(), "--target", target)
    assert code == 1
    assert "certificate verification failed" in out


def test_unreachable_server_is_refused(check: Checker, api_cert: trustme.LeafCert) -> None:
    server = check.start(api_cert)
    server.stop()
    code, reports = check.json(check.policy(), "--target", f"127.0.0.1:{server.port}")
    assert code == 1
    assert reports[0]["ok"] is False
    assert "cannot connect" in reports[0]["reason"]


def test_backup_only_match(
    check: Checker,
    api_cert: trustme.LeafCert,
    rogue_ca: trustme.CA,
    rogue_cert: trustme.LeafCert,
) -> None:
    """Two servers of the host use the intermediate's key; the third is accepted only
    through the backup (the other CA's key): it works, but the spare is spent."""
    servers = [check.start(api_cert), check.start(api_cert), check.start(rogue_cert)]
    backup = pin_of(rogue_ca.cert_pem.bytes())
    policy = check.policy([check.pins["intermediate"], backup])
    targets = [arg for s in servers for arg in ("--target", f"localhost:{s.port}")]
    code, reports = check.json(policy, *targets, trust=check.both)
    assert code == 0
    assert [r["ok"] for r in reports] == [True, True, True]
    assert [r["backup_only"] for r in reports] == [False, False, True]
    assert reports[2]["matched"] == [backup]
    assert reports[0]["spare"] == [backup]
    code, out, _ = check.run(policy, *targets, trust=check.both)
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith(f"localhost:{servers[2].port}"))
    assert "accepted (backup)" in line


def test_leaf_key_pin_and_single_pin_warnings(check: Checker, api_cert: trustme.LeafCert) -> None:
    target = f"localhost:{check.start(api_cert).port}"
    leafy = check.policy([check.pins["leaf"], check.pins["root"]])
    code, reports = check.json(leafy, "--target", target)
    assert code == 0
    assert reports[0]["leaf_pins"] == [check.pins["leaf"]]
    assert any("leaf's own key" in w for w in reports[0]["warnings"])
    code, out, _ = check.run(check.policy([check.pins["intermediate"]]), "--target", target)
    assert code == 0
    assert "warning: 'localhost': 1 pin, no backup" in out


def test_days_until_expiry_and_warn_days(check: Checker, intermediate: trustme.CA) -> None:
    soon = datetime.now(timezone.utc) + timedelta(days=12, hours=12)
    server = check.start(intermediate.issue_cert("localhost", not_after=soon))
    args = [check.policy(), "--target", f"localhost:{server.port}"]
    code, reports = check.json(*args, "--warn-days", "5")
    assert code == 0
    assert reports[0]["days_left"] == 12
    assert reports[0]["chain_days_left"] == 12
    assert not any("expires in" in w for w in reports[0]["warnings"])
    code, reports = check.json(*args, "--warn-days", "30")
    assert "a certificate of the chain expires in 12 days" in reports[0]["warnings"]


def test_signed_document_is_verified_first(check: Checker, api_cert: trustme.LeafCert) -> None:
    server = check.start(api_cert)
    key, other = ed25519_key(), ed25519_key()
    pub, other_pub = check.tmp / "k.pub", check.tmp / "o.pub"
    pub.write_text(public_pem(key))
    other_pub.write_text(public_pem(other))
    entries = [{"host": "localhost", "pins": [check.pins["intermediate"], check.pins["root"]]}]
    doc = check.tmp / "doc.json"
    doc.write_bytes(pinsdk.sign_envelope(payload(7, entries, expires_in=3 * 86400), key))
    common = [str(doc), "--target", f"localhost:{server.port}"]
    code, out, _ = check.run(*common, "--trusted-key", str(pub), "--trusted-key", str(other_pub))
    assert code == 0, out
    assert "document: version 7" in out
    assert "signed by 1 of 2 trusted keys (threshold 1)" in out
    assert f"missing: {pinsdk.keyid_of(other.public_key())}" in out
    assert "warning: the document expires within 30 days" in out
    # Not verified, not checked: a document needs its keys.
    code, _, err = check.run(*common)
    assert code == 2
    assert "give --trusted-key" in err
    # A document clients would refuse: nothing is checked, exit 1.
    code, out, _ = check.run(*common, "--trusted-key", str(other_pub))
    assert code == 1
    assert "REJECTED" in out
    assert server.wait_idle()
    assert server.handshakes_completed == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "localhost:notaport"], "is not HOST[:PORT]"),
        (["--trusted-key", "k.pub"], "is a policy, not a signed document"),
        (["--threshold", "2"], "is a policy, not a signed document"),
        (["--warn-days", "-1"], "--warn-days must not be negative"),
        (["--ca-file", "missing.pem"], "--ca-file 'missing.pem': no such file"),
    ],
)
def test_usage_errors_exit_2(
    check: Checker, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    monkeypatch.chdir(check.tmp)
    code = main(["check", check.policy(), *argv])
    assert code == 2
    assert message in check.capsys.readouterr().err


def test_without_targets_every_address_of_each_exact_host_on_443(check: Checker) -> None:
    """No --target: the policy's exact hosts, port 443, each address they resolve to
    (localhost: loopback only). Nothing of ours listens on 443, so it cannot be accepted."""
    code, reports = check.json(check.policy())
    assert code == 1
    assert {(r["host"], r["port"]) for r in reports} == {("localhost", 443)}
    assert {r["address"] for r in reports} <= {"127.0.0.1", "::1"}
    assert all(r["ok"] is False for r in reports)


def test_default_targets_are_the_exact_hosts() -> None:
    a, b = (pinsdk.spki_pin(ca.cert_pem.bytes()) for ca in (trustme.CA(), trustme.CA()))
    policy = PinPolicy.from_dict(
        {
            "domains": [
                {"host": "api.example.com", "pins": [a, b]},
                {"host": "*.cdn.example.com", "pins": [a, b]},
                {"host": "API.example.com", "pins": [a, b], "mode": "report"},
                {"host": "old.example.com", "pins": [a], "expires": "2020-01-01T00:00:00Z"},
                {"host": "10.0.0.1", "pins": [a]},
            ]
        }
    )
    now = datetime.now(timezone.utc).timestamp()
    assert default_hosts(policy, now) == ["api.example.com", "10.0.0.1"]
    findings = policy_findings(policy, now)
    assert any("'old.example.com': the entry has expired" in f for f in findings)
    assert any("'10.0.0.1': 1 pin, no backup" in f for f in findings)
    assert not any("'api.example.com'" in f for f in findings)
