"""The one lock and signal deferral of the transport (drivers/transport.py ``TransactionMixin``):
each message is atomic and holds a Ctrl-C until it is on the wire; a ``transaction()`` makes several
messages one exchange; ``hold_signals=False`` lets a signal land between a ramp's steps only."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from labsat.drivers.heater_dac import HeaterDAC
from labsat.drivers.pulse_shaper import PulseShaper
from labsat.drivers.transport import TransactionMixin, TransportMixin

pytestmark = pytest.mark.usefixtures("python_sigint")

ZEROS4 = "0.0000,0.0000,0.0000,0.0000"


def test_every_driver_takes_the_one_lock_from_the_transport():
    """No driver builds its own lock: the transport's (or, for the HTTP pulse shaper, the same mixin's)."""
    import labsat.drivers as pkg

    here = os.path.dirname(pkg.__file__)
    for name in sorted(os.listdir(here)):
        if name.endswith(".py") and name not in ("transport.py",):
            text = open(os.path.join(here, name)).read()
            assert "threading.RLock()" not in text and "threading.Lock()" not in text, name
            assert "deferred_sigint()" not in text or name == "base.py", name
    assert issubclass(HeaterDAC, TransportMixin) and issubclass(PulseShaper, TransactionMixin)


def test_a_sigint_during_one_write_is_held_until_the_write_is_sent():
    """The signal arrives inside the adapter's write: the message still goes out whole, then Ctrl-C."""
    with expected_protocol(HeaterDAC, [("VALL=0", "OK")], channels=4) as dac:
        adapter_write = dac.adapter._write
        sent = []

        def write(command, **kw):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # every chance for a handler to run mid-message
                pass
            adapter_write(command, **kw)
            sent.append(command)

        dac.adapter._write = write
        with pytest.raises(KeyboardInterrupt):
            dac.command("VALL=0")  # write + its OK reply: one transaction
        assert sent == ["VALL=0"]
        assert dac.adapter._read_buffer is None  # ... and its reply was read before the Ctrl-C
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ramp_is_interruptible_between_steps_not_inside_one():
    """hold_signals=False: a Ctrl-C during the first of three ramp steps lets that step finish (its OK
    read) and stops the ramp before the second; the set-point records the step that was sent."""
    with expected_protocol(HeaterDAC, [
        ("VALL?", ZEROS4),
        (b"V1=0.8333\n", b"OK"),
    ], channels=4, max_step_v=1.0) as dac:
        adapter_write_bytes = dac.adapter._write_bytes

        def write_bytes(content, **kw):
            if content.startswith(b"V1="):  # a ramp step (not the read-back before the ramp)
                os.kill(os.getpid(), signal.SIGINT)
            adapter_write_bytes(content, **kw)

        dac.adapter._write_bytes = write_bytes
        with pytest.raises(KeyboardInterrupt):
            dac.set_voltages(2.5, channels=[1])
        assert dac.writes == 1 and dac.adapter._read_buffer is None  # step 1 sent, its OK read; no step 2
        np.testing.assert_allclose(dac._setpoint, [0.0, 2.5 / 3, 0.0, 0.0])


class _Slow(TransactionMixin):
    def __init__(self):
        super().__init__()
        self.log: list[str] = []

    def exchange(self, who: str) -> None:
        with self.transaction():
            for k in range(3):
                self.log.append(f"{who}{k}")
                time.sleep(0.005)


def test_a_transaction_is_exclusive_across_threads():
    dev = _Slow()
    threads = [threading.Thread(target=dev.exchange, args=(w,)) for w in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = ["".join(dev.log[i:i + 3]) for i in range(0, 9, 3)]
    assert sorted(runs) == ["a0a1a2", "b0b1b2", "c0c1c2"], dev.log  # never interleaved


def test_transactions_nest_and_hold_signals_to_the_outermost():
    dev = _Slow()
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with dev.transaction():
            with dev.transaction(hold_signals=False):
                with dev.transaction():
                    os.kill(os.getpid(), signal.SIGINT)
                steps.append("inner ended")
            steps.append("outer continues")
    assert steps == ["inner ended", "outer continues"]
    assert dev._lock.acquire(blocking=False)  # released after the KeyboardInterrupt
    dev._lock.release()
