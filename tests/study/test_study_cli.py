"""The study command without a cluster: the SLURM / PBS job scripts dask-jobqueue would render,
and a clear exit 2 when Dask is not installed."""

from __future__ import annotations

import sys

import pytest


def _study(tmp_path, extra=""):
    ws = tmp_path / "runs" / "a"
    ws.mkdir(parents=True)
    (ws / "ptytui.toml").write_text("[workspace]\n")
    (tmp_path / "ptytui-study.toml").write_text('[study]\ncells = "runs/{name}"\n' + extra)
    return tmp_path


def test_the_slurm_job_script_is_rendered_without_slurm(tmp_path, capsys):
    pytest.importorskip("dask_jobqueue")
    from ptytui.cli import main

    study = _study(tmp_path, '[cluster]\nkind = "slurm"\nqueue = "gpu"\ncores = 8\nmemory = "32GB"\n'
                             'walltime = "01:30:00"\njobs = 4\njob_extra = ["--gres=gpu:1"]\n')
    code = main(["study", str(study), "--job-script"])
    script = capsys.readouterr().out
    assert code == 0
    for line in ("#SBATCH -J ptytui-study", "#SBATCH -p gpu", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=30G",
                 "#SBATCH -t 01:30:00", "#SBATCH --gres=gpu:1"):
        assert line in script, line
    assert "distributed.cli.dask_worker" in script and "--nthreads 8" in script


def test_flags_override_the_cluster_table_for_pbs(tmp_path, capsys):
    pytest.importorskip("dask_jobqueue")
    from ptytui.cli import main

    code = main(["study", str(_study(tmp_path)), "--cluster", "pbs", "--queue", "short", "--cores", "2",
                 "--memory", "4GB", "--walltime", "00:10:00", "--job-script"])
    script = capsys.readouterr().out
    assert code == 0
    assert "#PBS -q short" in script and "walltime=00:10:00" in script and "ncpus=2" in script


def test_without_dask_the_study_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    from ptytui.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    code = main(["study", str(_study(tmp_path))])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and 'pip install "ptytui[cluster]"' in err
