"""The virtual lab of a station in a child process, so the client and the simulator do not share one GIL.

It builds the lab from the station's kinds (their virtual scenes), so it sits above the drivers and the
virtual lab (it was ``labsat.drivers.sim.process``).

In-process, every reply the simulator computes holds the GIL the client needs, and a loopback send
waits for the simulator thread to let go; the wall clock then measures Python's thread switching,
not the bench. A :class:`LabProcess` serves the instruments of a station config from a spawned
process and hands back a copy of the config with ``backend: real`` and their addresses, which a
:class:`~labsat.station.Station` opens like any bench. The lab's modelled-time clock is read over a
pipe.

    with LabProcess(load_config("instruments.yaml")) as lab:
        with Station(lab.config) as st:
            ...
        print(lab.clock())
"""
from __future__ import annotations

import multiprocessing as mp


def _serve(config_data: dict, conn) -> None:  # pragma: no cover - runs in the child
    from labsat.config import parse_config
    from labsat.drivers.sim.servers import serve_simulated
    from labsat.station import Station

    try:
        cfg = parse_config(config_data)
        st = Station(cfg)
        st._start_virtual_lab()
        lab = st.lab
        addresses = {name: serve_simulated(lab, name, icfg, cfg.station.sim)
                     for name, icfg in cfg.instruments.items() if icfg.address == "auto"}
        conn.send(("ok", addresses))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    try:
        while True:
            what = conn.recv()
            if what == "stop":
                break
            if what == "clock":
                c = lab.clock
                conn.send(dict(modelled_s=c.modelled_s, slept_s=c.slept_s, compute_s=c.compute_s,
                               messages=c.messages, per_instrument=dict(c.per_instrument)))
            elif what == "reset":
                lab.clock.reset()
                conn.send(None)
            elif what == "heaters":
                conn.send(lab.chip.heater_v.tolist())
            else:
                conn.send(None)
    except EOFError:
        pass
    finally:
        lab.close()


class LabProcess:
    def __init__(self, config, start_timeout_s: float = 120.0):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(config.model_dump(mode="json"), child),
                                name="labsat-virtual-lab", daemon=True)
        self.proc.start()
        child.close()
        if not self._conn.poll(start_timeout_s):
            self.close()
            raise RuntimeError("the virtual lab process did not start")
        try:
            status, payload = self._conn.recv()
        except EOFError:
            self.close()
            raise RuntimeError("the virtual lab process exited before it started (a script that starts "
                               "one needs the `if __name__ == '__main__':` guard)") from None
        if status != "ok":
            self.close()
            raise RuntimeError(f"the virtual lab process failed: {payload}")
        self.addresses: dict[str, str] = payload
        self.config = config.model_copy(deep=True)
        self.config.station.backend = "real"
        for name, address in self.addresses.items():
            self.config.instruments[name].address = address

    def _call(self, what: str):
        self._conn.send(what)
        return self._conn.recv()

    def clock(self) -> dict:
        return self._call("clock")

    def reset_clock(self) -> None:
        self._call("reset")

    def heaters(self) -> list[float]:
        return self._call("heaters")

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self._conn.send("stop")
            except (OSError, BrokenPipeError):
                pass
            self.proc.join(10)
        if self.proc.is_alive():  # pragma: no cover
            self.proc.terminate()
            self.proc.join(5)

    def __enter__(self) -> "LabProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
