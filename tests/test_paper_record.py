"""The paper-* experiments are recorded like every other front door: labsat.workflows.paper_experiment."""
from __future__ import annotations

import pytest

from conftest import minimal_config, write_yaml
from labsat import runs, workflows


def test_paper_experiment_is_a_run_with_its_results_attached(tmp_path):
    d = minimal_config()
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    station = write_yaml(tmp_path / "station.yaml", d)
    calls = []

    def fake_paper_run(name, *, log, **options):  # the recording is under test, not the experiment
        calls.append(options)
        log(f"{name}: 3 runs")
        if name == "paper-broken":
            raise ValueError("unknown experiment 'paper-broken'")
        out = tmp_path / "exp" / name
        out.mkdir(parents=True)
        (out / "table.md").write_text("| BP | 90 |")
        (out / "results.csv").write_text("method,accuracy\nbp,0.9\n")
        return {"directory": out, "seconds": 2.0, "table": "| BP | 90 |", "rows": [{"method": "bp"}] * 3}

    notes = []
    result = workflows.paper_experiment("paper-mzi", station, fake_paper_run, workflows.Hooks(note=notes.append),
                                        full=False, seeds=2, chips=3, settings=["epochs=1"], out=tmp_path / "exp")
    with pytest.raises(ValueError, match="paper-broken"):
        workflows.paper_experiment("paper-broken", station, fake_paper_run, seeds=1)
    with runs.RunDB(tmp_path / "runs" / runs.DB_NAME) as db:
        done, failed = db.runs("experiment")
    assert calls[0] == {"full": False, "seeds": 2, "chips": 3, "settings": ["epochs=1"], "out": tmp_path / "exp"}
    assert result["run"] == done["id"] and done["status"] == "completed" and notes == ["paper-mzi: 3 runs"]
    assert done["config"]["experiment"] == "paper-mzi" and done["config"]["setup"]["seeds"] == 2
    assert done["config"]["setup"]["out"] == str(tmp_path / "exp")  # stored as text
    assert done["result"]["table"] == "| BP | 90 |" and done["result"]["n_rows"] == 3
    assert sorted(p.rsplit("/", 1)[1] for p in done["result"]["files"]) == ["results.csv", "table.md"]
    assert failed["status"] == "failed" and "paper-broken" in failed["error"]
