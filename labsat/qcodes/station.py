"""A QCoDeS :class:`~qcodes.Station` built from instruments.yaml.

The labsat :class:`~labsat.station.Station` opens the instruments (starting the virtual lab for
``backend: sim``) and owns their safety; each driver is wrapped as a QCoDeS instrument named as in
instruments.yaml and added to a QCoDeS Station, whose snapshot also carries the station file.

    from labsat.qcodes import QcodesStation

    with QcodesStation("instruments.yaml") as qs:
        qs.station.heaters.ch0.voltage(1.5)        # ramped, limited, read back
        print(qs.station.detectors.ch0.power())
"""
from __future__ import annotations

import json
from pathlib import Path

import qcodes

from labsat.config import StationConfig
from labsat.station import Station

from .instruments import LabsatInstrument, as_qcodes


class QcodesStation:
    """Context manager: a connected labsat Station and the QCoDeS Station over it.

    On exit the QCoDeS instruments are closed first (deregistered), then the labsat Station puts
    every output in its safe state and closes the connections, also on an exception."""

    def __init__(self, config: StationConfig | str | Path, chip_seed: int | None = None,
                 layers: list[str] | None = None):
        self.labsat = Station(config, chip_seed=chip_seed, layers=layers)
        self.station: qcodes.Station | None = None
        self.instruments: dict[str, LabsatInstrument] = {}

    def open(self) -> "QcodesStation":
        self.labsat.connect()
        try:
            for name, driver in self.labsat.instruments.items():
                self.instruments[name] = as_qcodes(driver, name)
            # the default station: dond/Measurement snapshot it into every dataset
            self.station = qcodes.Station(*self.instruments.values(), default=True)
            self.station.metadata["labsat_station"] = json.loads(self.labsat.config.model_dump_json())
            self.station.metadata["labsat_addresses"] = dict(self.labsat.addresses)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for inst in self.instruments.values():
            try:
                inst.close()
            except Exception:  # pragma: no cover - already closed
                pass
        self.instruments.clear()
        if self.station is not None and qcodes.Station.default is self.station:
            qcodes.Station.default = None
        self.station = None
        self.labsat.close()

    def __getitem__(self, name: str) -> LabsatInstrument:
        return self.instruments[name]

    def __enter__(self) -> "QcodesStation":
        self.labsat.__enter__()  # SIGTERM -> orderly exit, as for any labsat Station
        try:
            return self.open()
        except BaseException:
            self.labsat.__exit__(None, None, None)
            raise

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        finally:
            self.labsat.__exit__(*exc)
