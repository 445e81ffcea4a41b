"""The demo that `make demo` runs is also an integration test."""

from __future__ import annotations

import pytest

from pinsdk._cli import main as cli_main
from pinsdk._demo.demo import main, run_demo


@pytest.mark.anyio
async def test_demo_steps_all_behave() -> None:
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


def test_demo_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "Exit status 0 if every" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["demo", "--help"])
    assert "usage: pinsdk demo" in capsys.readouterr().out
