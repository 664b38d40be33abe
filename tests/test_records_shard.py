"""Two processes fill one record folder, each training its shard of the missing runs: no run is trained twice."""

import json
import os
import subprocess
import sys
from pathlib import Path

from mmrepro import records
from mmrepro.experiment import RunSpec

ROOT = Path(__file__).resolve().parent.parent
TRAIN = {"epochs": 2, "optimizer": "sgd", "lr": 0.05, "batch_size": 64}
WORKER = """
import json, sys
from pathlib import Path
from mmrepro import records
from mmrepro.experiment import RunSpec
specs = [RunSpec.from_dict(d) for d in json.loads(Path(sys.argv[1]).read_text())]
grid = records.run_grid("toy", specs, device="cpu", processes=1, shard=(int(sys.argv[2]), 2), root=Path(sys.argv[3]))
print(json.dumps({"computed": grid.computed, "arms": sorted(f"{r['arm']}/{r['seed']}" for r in grid.records)}))
"""


def specs() -> list[RunSpec]:
    data = {"name": "synthetic", "sizes": [120, 40, 40]}
    return [RunSpec(arm, method, seed, data, TRAIN) for arm, method in (("joint", "joint"), ("late", "late"))
            for seed in (0, 1, 2)]


def test_two_processes_fill_one_folder_without_training_a_run_twice(tmp_path):
    listed = tmp_path / "specs.json"
    listed.write_text(json.dumps([s.as_dict() for s in specs()]))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MMREPRO_PROGRESS": "0"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(listed), str(i), str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert [o["computed"] for o in outs] == [3, 3]  # positions 0, 2, 4 and 1, 3, 5: disjoint, together all six
    files = sorted((tmp_path / "toy").glob("*.json"))
    assert len(files) == 6
    assert len({records.read(f)["key"] for f in files}) == 6
    again = records.run_grid("toy", specs(), device="cpu", processes=1, root=tmp_path)
    assert (again.loaded, again.computed) == (6, 0)  # a later process finds every run on disk
