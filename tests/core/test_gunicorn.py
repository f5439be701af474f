from pathlib import Path

from config import gunicorn
from core.management.commands.runall import metrics_environment


class Worker:
    pid = 4242


def test_gunicorn_child_exit_marks_the_worker_dead(tmp_path, monkeypatch):
    # given the metric files of a live worker and another one
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    (tmp_path / "gauge_livesum_7.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")

    # when the first one exits
    gunicorn.child_exit(None, Worker())

    # then its live gauges go (its counters stay: they still count)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "counter_4242.db",
        "gauge_livesum_7.db",
    ]


def test_runall_gives_several_web_workers_an_emptied_metrics_directory(tmp_path):
    # given a directory left with an earlier run's counts
    left = tmp_path / "metrics"
    left.mkdir()
    (left / "counter_1.db").write_bytes(b"old")

    environ = metrics_environment({"PROMETHEUS_MULTIPROC_DIR": str(left)}, web_workers=3)

    assert environ["PROMETHEUS_MULTIPROC_DIR"] == str(left)
    assert list(left.iterdir()) == []


def test_runall_makes_a_metrics_directory_when_none_is_set():
    environ = metrics_environment({"PATH": "/bin"}, web_workers=3)

    directory = Path(environ["PROMETHEUS_MULTIPROC_DIR"])
    assert directory.is_dir()
    assert list(directory.iterdir()) == []
    directory.rmdir()
    assert metrics_environment({"PATH": "/bin"}, web_workers=1) == {"PATH": "/bin"}
