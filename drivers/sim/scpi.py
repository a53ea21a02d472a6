"""The SCPI error queue of the simulated instruments (``SYST:ERR?``), below every simulated instrument
module so that an instrument module that ``servers.SIM_INSTRUMENTS`` names (the block DAC) need not
import :mod:`.servers` back (imports run one way: tests/test_import_graph.py)."""
from __future__ import annotations


class ScpiErrorQueue:
    def __init__(self):
        self.errors: list[str] = []

    def push(self, code: int, message: str) -> None:
        self.errors.append(f'{code},"{message}"')

    def pop(self) -> str:
        return self.errors.pop(0) if self.errors else '0,"No error"'
