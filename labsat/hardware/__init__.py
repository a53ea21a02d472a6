"""Bench adapters: the hardware side of each physical layer kind (controls and inputs -> instruments ->
outputs), built only from drivers. The MZI mesh's adapter is labsat.kinds.mesh.MeshHardware."""
