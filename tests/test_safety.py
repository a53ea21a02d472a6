"""Safe state: whatever ends a run (an exception, Ctrl-C, SIGTERM), every heater is left at 0 V and the
modulator output off, as the virtual chip itself sees it; and Ctrl-C never cuts a transfer in half."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from labsat.drivers.base import deferred_sigint
from labsat.station import Station

pytestmark = pytest.mark.usefixtures("python_sigint")


class Boom(RuntimeError):
    pass


def assert_safe(st: Station) -> None:
    chip = st.lab.chip
    np.testing.assert_array_equal(chip.heater_v, 0.0)
    np.testing.assert_array_equal(chip.modulator_v, 0.0)
    sim_heaters, sim_mod = st.lab.instruments["heaters"], st.lab.instruments["modulator"]
    np.testing.assert_array_equal(sim_heaters.volts, 0.0)
    assert sim_mod.output_on is False
    np.testing.assert_array_equal(sim_mod.levels, 0.0)
    assert st.instruments == {} and not st.lab.servers  # connections closed, lab stopped


def online_training(st: Station, on_step, epochs: int = 1):
    from labsat.data import load_digits
    from labsat.train import TrainConfig, build_model, train

    layer = st.config.layers["mesh"]
    data = load_digits(layer.modes, seed=0)
    model = build_model(layer, 600.0, data.n_classes, hardware=st.mesh())
    cfg = TrainConfig(mode="online", optimizer="sam", epochs=epochs, batch_size=32)
    return train(model, data, cfg, on_step=on_step)


@pytest.mark.parametrize("exc", [Boom("lost the lab"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_interrupted_online_training_leaves_lab_safe(small_station_yaml, exc):
    seen = {}

    def on_step(step, steps):
        if step == 2:
            seen["heater_v"] = st.lab.chip.heater_v.copy()
            seen["output_on"] = st.lab.instruments["modulator"].output_on
            raise exc

    with pytest.raises(type(exc)):
        with Station(small_station_yaml) as st:
            online_training(st, on_step)
    # the run was really driving the chip when it died...
    assert np.count_nonzero(seen["heater_v"]) > 6 and seen["output_on"] is True
    # ...and now everything is safe
    assert_safe(st)


def test_sigterm_mid_training_leaves_lab_safe(small_station_yaml):
    previous = signal.getsignal(signal.SIGTERM)

    def on_step(step, steps):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(SystemExit) as info:
        with Station(small_station_yaml) as st:
            online_training(st, on_step)
    assert info.value.code == 128 + signal.SIGTERM
    assert_safe(st)
    assert signal.getsignal(signal.SIGTERM) is previous  # the station's handler is gone again


def test_failed_connect_restores_sigterm(tmp_path, config_dict):
    """A station that cannot connect leaves no signal handler of its own behind."""
    import yaml

    config_dict["instruments"]["heaters"]["limits"]["v_max"] = 13.0  # beyond the DAC's full scale
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ValueError, match="full scale"):
        with Station(path):
            pass
    assert signal.getsignal(signal.SIGTERM) is previous


def test_normal_exit_is_safe_too(small_station_yaml):
    with Station(small_station_yaml) as st:
        hw = st.mesh()
        hw.forward(np.full((2, hw.modes), 0.5), np.full(hw.n_controls, 0.6))
        assert np.all(st.lab.chip.heater_v > 0)
    assert_safe(st)


def test_close_is_idempotent(small_station_yaml):
    st = Station(small_station_yaml).connect()
    st.instruments["heaters"].set_voltages(np.full(12, 1.0), channels=np.arange(12))
    st.close()
    st.close()
    assert_safe(st)


def test_shutdown_after_faulty_readback_still_zeroes(small_station_yaml):
    """If the heater read-back disagrees with the set-point (a fault), shutdown still reaches 0 V."""
    with Station(small_station_yaml) as st:
        heaters = st.instruments["heaters"]
        heaters.set_voltages(np.full(12, 2.0), channels=np.arange(12))
        st.lab.instruments["heaters"].volts[3] = 4.0  # the instrument drifted behind our back
        from labsat.drivers.base import InstrumentError

        with pytest.raises(InstrumentError, match="channel 3 reads 4 V but was set to 2 V"):
            heaters.set_voltages(np.full(12, 1.0), channels=np.arange(12))
    assert_safe(st)


# --- Ctrl-C is held until the transfer ends ---
def test_deferred_sigint_raises_only_on_exit():
    reached_end = False
    with pytest.raises(KeyboardInterrupt):
        with deferred_sigint():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # give the interpreter every chance to run the handler
                pass
            reached_end = True
    assert reached_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nested_deferred_sigint_holds_until_the_outermost_ends():
    """An inner transfer inside an outer one (a retried query inside a read-back) must not let the
    Ctrl-C out while the outer transfer is still going."""
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_sigint():
            with deferred_sigint():
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("inner done")
            steps.append("outer continues")
    assert steps == ["inner done", "outer continues"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with deferred_sigint():  # and the depth is back to zero: a fresh use defers again
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler


def test_deferred_sigint_without_signal_is_transparent():
    with deferred_sigint():
        x = 1
    assert x == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_sigint_lets_exceptions_through():
    with pytest.raises(Boom):
        with deferred_sigint():
            raise Boom()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_deferred_sigint_is_a_noop_off_the_main_thread():
    import threading

    out = []

    def worker():
        with deferred_sigint():
            out.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert out == [signal.default_int_handler]


def test_ctrl_c_during_heater_transfer_completes_the_message(small_station_yaml):
    """A Ctrl-C that lands while the heater commands are on the wire: every command of that transfer
    reaches the instrument and every reply is read (the line stays in sync), then KeyboardInterrupt;
    the station then ramps everything to 0 V."""
    with pytest.raises(KeyboardInterrupt):
        with Station(small_station_yaml) as st:
            heaters = st.instruments["heaters"]
            heaters.set_voltages(np.full(12, 0.4), channels=np.arange(12))
            original = heaters.write_bytes

            def write_bytes(data, **kw):
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the start and end of the transfer
                return original(data, **kw)

            heaters.write_bytes = write_bytes
            try:
                heaters.set_voltages(np.full(12, 0.8), channels=np.arange(12))
            except KeyboardInterrupt:
                heaters.write_bytes = original
                # the whole message arrived: all 12 channels hold the value, none half-written
                np.testing.assert_allclose(st.lab.chip.heater_v[:12], 0.8)
                # and the replies were consumed: the next query gets its own answer
                np.testing.assert_allclose(heaters.voltages()[:12], 0.8)
                # and the driver knows the new set-point: the next change is not taken for a fault
                heaters.set_voltages(np.full(12, 0.5), channels=np.arange(12))
                np.testing.assert_allclose(st.lab.chip.heater_v[:12], 0.5)
                raise
    assert_safe(st)
