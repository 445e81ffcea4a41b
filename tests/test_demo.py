"""The demo that `make demo` runs is also an integration test."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import trustme

from pinsdk._cli import main as cli_main
from pinsdk._demo.demo import main, run_demo


@pytest.mark.anyio
async def test_demo_steps_all_behave(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[trustme.CA] = []

    class RecordingCA(trustme.CA):  # trustme's own CA, counted: the demo's only CA code
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(trustme, "CA", RecordingCA)
    lines: list[str] = []
    assert await run_demo(lines.append)
    text = "\n".join(lines)
    assert "attacker received 0 bytes" in text
    assert "sent it the Authorization header" in text
    assert "pins in force: version 2" in text
    assert "rejected: version 1 is older than version 2 in force" in text
    assert "report: 127.0.0.1:" in text
    assert "UNEXPECTED" not in text
    assert text.count("  as expected") == 9
    # Two API roots with an intermediate each, the attacker's and the operator's roots.
    assert len(made) == 6
    assert sum(ca.parent_cert is not None for ca in made) == 2


def test_demo_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "Exit status 0 if every" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["demo", "--help"])
    assert "usage: pinsdk demo" in capsys.readouterr().out


def test_demo_without_trustme_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As on a machine where only pinsdk is installed: `import trustme` fails.
    monkeypatch.setitem(sys.modules, "trustme", None)
    monkeypatch.delitem(sys.modules, "pinsdk._demo.demo")
    assert cli_main(["demo"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "pinsdk demo: error: needs trustme, in the 'demo' extra: pip install '.[demo]' in a "
        "checkout of pinsdk, or pip install trustme\n"
    )
