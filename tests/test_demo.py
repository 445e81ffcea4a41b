"""The demo that `make demo` runs is also an integration test."""

from __future__ import annotations

import pytest

from pinsdk.demo import main, run_demo


@pytest.mark.anyio
async def test_demo_steps_all_behave() -> None:
    lines: list[str] = []
    assert await run_demo(lines.append)
    text = "\n".join(lines)
    assert "attacker received 0 bytes" in text
    assert "sent it the Authorization header" in text
    assert "UNEXPECTED" not in text


def test_demo_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "Exit status 0 if every step behaved" in capsys.readouterr().out
