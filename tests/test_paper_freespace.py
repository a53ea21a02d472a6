"""labsat.paper.freespace: the paper's free-space protocols at CI size (plumbing, not accuracy)."""
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from labsat.paper import common, freespace as fs
from labsat.sat.alignment import AdversarialAlignment

STATION = str(Path(__file__).resolve().parents[1] / "stations" / "freespace.yaml")


def test_misalignment_warps_the_input_and_is_restored():
    net = fs.FreeSpaceMLP(0)
    x = torch.rand(4, 1, 28, 28)
    base = net(x).detach()
    assert torch.equal(net._warp(x), x)
    with net.misaligned(rotation_deg=3.0, shift_y_px=1.0):
        assert net.rotation_deg == 3.0
        moved = net(x).detach()
    assert net.rotation_deg == 0.0 and net.shift_y_px == 0.0
    assert not torch.allclose(moved, base)
    assert torch.allclose(net(x), base)
    img = torch.zeros(1, 1, 28, 28)
    img[0, 0, 10, 14] = 1.0
    with net.misaligned(shift_y_px=2.0):
        assert int(net._warp(img)[0, 0].argmax()) // 28 == 12  # two rows down


def test_adversarial_alignment_drives_the_mlp_and_puts_it_back():
    net = fs.FreeSpaceMLP(0)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    adv = AdversarialAlignment(net, fs._probes("fsnn"), seed=1)
    seen = []
    loss = lambda: torch.nn.functional.cross_entropy(net(x), y)  # noqa: E731
    for _ in range(3):
        adv.step(loss, lambda: seen.append((net.rotation_deg, net.shift_y_px, net.scale)) or loss())
    assert seen[0][0] != 0.0 and seen[1][1] != 0.0 and 1.0 <= seen[2][2] <= 1.1  # round robin: angle, shift, scale
    assert (net.rotation_deg, net.shift_y_px, net.scale) == (0.0, 0.0, 1.0)


@pytest.mark.parametrize("network", ["fsnn", "d2nn"])
def test_run_task_rows(network):
    protocol = common.Protocol(eval_chips=(201,), seeds=(0,), n_train=48, n_test=24)
    tasks = [t for t in fs.tasks(protocol, {"epochs": 1}, station=STATION, networks=(network,), d2nn_sizes=(16, 8))]
    assert [t["method"] for t in tasks] == ["bp", "sat"]
    rows = fs.run_task(tasks[1])
    n = len(fs.D2NN_ROT) if network == "d2nn" else len(fs.FSNN_POINTS)
    assert len(rows) == n and all(0 <= r["accuracy"] <= 1 for r in rows)
    table, fig = fs.report(rows)
    assert ("D2NN" if network == "d2nn" else "784-144-10") in table
    common.plt().close(fig)


def test_cli_paper_experiment_end_to_end_and_bad_setting(tmp_path):
    from conftest import minimal_config, write_yaml
    from labsat.cli import app

    d = minimal_config()
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    station = str(write_yaml(tmp_path / "station.yaml", d))  # the run database of this station records the runs
    runner = CliRunner()
    bad = runner.invoke(app, ["experiment", "paper-microring", "--set", "colour=red", "--out", str(tmp_path),
                              "-s", station])
    assert bad.exit_code == 2 and "colour=red" in bad.output
    ok = runner.invoke(app, ["experiment", "paper-microring", "--chips", "1", "--set", "epochs=1",
                             "--set", "drifts=0", "--out", str(tmp_path), "-s", station])
    assert ok.exit_code == 0, ok.output
    d = tmp_path / "paper-microring+epochs=1+drifts=0"
    assert (d / "plot.png").exists() and "SAT" in (d / "table.md").read_text()
    again = runner.invoke(app, ["experiment", "paper-microring", "--chips", "1", "--set", "epochs=1",
                                "--set", "drifts=0", "--out", str(tmp_path), "-s", station])
    assert again.exit_code == 0  # every run is stored in the sweep database; a re-run computes nothing
    listed = runner.invoke(app, ["runs", "list", "-s", station, "--kind", "experiment", "--json"])
    assert listed.exit_code == 0, listed.output
    import json

    runs = json.loads(listed.stdout)["runs"]
    assert [r["status"] for r in runs] == ["failed", "completed", "completed"]  # the bad --set, then both runs
