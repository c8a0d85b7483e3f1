"""Smoke tests of the benchmark harness: every scenario at a tiny size.

These check that each scenario still runs and produces its table, its data
and the asset files. They assert no timing: speed is for the benchmarks.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import harness, scenarios, scenarios_scale  # noqa: E402
from benchmarks.scenarios import Workspace  # noqa: E402

HAS_CELERY = importlib.util.find_spec("celery") is not None
HAS_REDIS_SERVER = Path(harness.REDIS_SERVER).exists()
HAS_PYINSTRUMENT = importlib.util.find_spec("pyinstrument") is not None


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(root=tmp_path, timeout_s=120.0)


def column(result: harness.ScenarioResult, header: str) -> list[str]:
    index = result.headers.index(header)
    return [str(row[index]) for row in result.rows]


# -- pure helpers


def test_csv_dictionary_rows_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    rows = harness.write_csv_dictionary(path, 4, definitions_per_entry=2)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert rows == 8
    assert len(lines) == 9
    assert lines[0] == "id,uuid,word,pos,level,definition,example"
    uuids = {line.split(",")[1] for line in lines[1:]}
    assert len(uuids) == 4
    again = tmp_path / "e.csv"
    harness.write_csv_dictionary(again, 4, definitions_per_entry=2)
    assert again.read_bytes() == path.read_bytes()


def test_jobs_per_entry_rounding() -> None:
    assert harness.entries_for_jobs(600) == 200
    assert harness.entries_for_jobs(10_000) == 3334
    assert harness.planned_jobs(3334) == 10_002
    assert harness.planned_jobs(10, 2) == 50


def test_latency_bound_rounds_up() -> None:
    assert scenarios.latency_bound_s(600, 50, 200) == pytest.approx(2.4)
    assert scenarios.latency_bound_s(601, 50, 200) == pytest.approx(2.6)


def test_request_summary_turnaround() -> None:
    records = [
        {"lane": "audio", "status": 200, "connection_id": 1,
         "started_s": 0.0, "ended_s": 1.0},
        {"lane": "audio", "status": 200, "connection_id": 1,
         "started_s": 1.5, "ended_s": 2.5},
        {"lane": "images", "status": 429, "connection_id": 2,
         "started_s": 0.2, "ended_s": 0.3},
    ]  # fmt: skip
    summary = harness.summarize_requests(records)
    assert summary.count == 3
    assert summary.first_start_s == 0.0
    assert summary.last_end_s == 2.5
    assert summary.by_status == {"200": 2, "429": 1}
    assert summary.by_lane == {"audio": 2, "images": 1}
    assert summary.mean_turnaround_s == pytest.approx(0.5)
    assert summary.connections == 2


def test_minute_counts_skip_partial_minute() -> None:
    starts = [0.0, 10.0, 59.9, 60.0, 119.0, 125.0]
    assert scenarios_scale.minute_counts(starts, 0.0, 125.0) == [3, 2]


def test_lane_rate_figures_share_of_limit() -> None:
    records = [{"status": 200, "started_s": float(second)} for second in range(130)] + [
        {"status": 429, "started_s": 5.0}
    ]
    figures = scenarios_scale.lane_rate_figures(records, rpm=60)
    assert figures["success"] == 130
    assert figures["rate_limited"] == 1
    assert figures["minutes"] == [60, 60]
    assert figures["mean_share_of_limit"] == pytest.approx(1.0)
    assert figures["share_429"] == pytest.approx(1 / 131)


def test_missing_files_takes_last_entries() -> None:
    files = [
        "word_a_0.aac", "shortdef_a_1.aac", "image_a_1.png",
        "word_b_0.aac", "shortdef_b_2.aac", "image_b_2.png",
    ]  # fmt: skip
    assert scenarios_scale.missing_files(files, 0.5) == {
        "word_b_0.aac",
        "shortdef_b_2.aac",
        "image_b_2.png",
    }


def test_minimal_files_pass_the_checks() -> None:
    from esl_assets.storage import audio_problem, image_problem

    assert image_problem(scenarios_scale.minimal_png()[:16], "png") is None
    assert audio_problem(scenarios_scale.MINIMAL_AAC[:16], "aac") is None


def test_format_table_aligns_columns() -> None:
    table = harness.format_table(["a", "long"], [[1, 2], ["333", 4]])
    lines = table.splitlines()
    assert lines[0] == "| a   | long |"
    assert lines[1] == "|-----|------|"
    assert lines[3] == "| 333 | 4    |"


# -- scenarios at tiny size (subprocesses, fake server on 127.0.0.1)


@pytest.mark.slow
def test_latency_scenario_tiny(workspace: Workspace) -> None:
    result = scenarios.scenario_latency(
        workspace, jobs=9, concurrency=(2,), latency_ms=5.0, celery=False
    )
    assert column(result, "design") == ["esl-assets", "bare AsyncOpenAI"]
    assert column(result, "files") == ["9", "9"]
    assert column(result, "requests") == ["9", "9"]
    assert len(result.data["runs"]) == 2
    assert all(run["wall_s"] > 0 for run in result.data["runs"])
    assert "| esl-assets" in result.to_markdown()
    outdir = workspace.root / "latency" / "ours-c2-0" / "out"
    assert harness.count_asset_files(outdir) == 9


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.skipif(not HAS_CELERY, reason="needs the bench extra (celery)")
@pytest.mark.skipif(not HAS_REDIS_SERVER, reason="needs redis-server")
def test_memory_scenario_tiny_with_celery(workspace: Workspace) -> None:
    result = scenarios.scenario_memory(workspace, jobs=6, concurrency=2, latency_ms=5.0)
    assert len(result.rows) == 4
    assert result.data["celery"]["files"] == 6
    assert result.data["ours"]["files"] == 6
    assert result.data["celery"]["worker_processes"] >= 3
    assert result.data["ratio_rss"] > 0
    assert "goal <= 0.1" in result.notes[0]


@pytest.mark.slow
def test_overhead_scenario_tiny(workspace: Workspace) -> None:
    result = scenarios.scenario_overhead(
        workspace, jobs=9, concurrency=3, profile=HAS_PYINSTRUMENT
    )
    measures = {str(row[0]): row[1:] for row in result.rows}
    assert measures["jobs"] == ["9", "9"]
    assert measures["files written"] == ["9", "9"]
    assert float(measures["CPU s, whole process (user + sys)"][0]) > 0
    assert float(measures["CPU ms per job, whole process"][1]) > 0
    assert result.headers == ["measure", "esl-assets", "bare AsyncOpenAI"]
    if HAS_PYINSTRUMENT:
        for report in result.data["profiles"].values():
            assert Path(report).stat().st_size > 0


@pytest.mark.slow
def test_startup_scenario_tiny(workspace: Workspace) -> None:
    result = scenarios.scenario_startup(workspace, repeats=1)
    assert column(result, "runs") == ["1", "1", "3"]
    assert result.data["first_request_s"][0] > 0
    assert result.data["slowest_imports_ms"]


@pytest.mark.slow
def test_ratelimit_scenario_tiny(workspace: Workspace) -> None:
    result = scenarios_scale.scenario_ratelimit(
        workspace, entries=4, rpm=600, concurrency=4, latency_ms=1.0
    )
    assert column(result, "lane") == ["audio", "images"]
    assert result.data["lanes"]["audio"]["success"] == 8
    assert result.data["lanes"]["images"]["success"] == 4
    assert result.data["errors"] == 0
    # A run this short has no complete minute to rate.
    assert column(result, "share of limit") == ["-", "-"]


@pytest.mark.slow
def test_scale_scenario_tiny(workspace: Workspace) -> None:
    result = scenarios_scale.scenario_scale(workspace, rows=20)
    assert result.data["planned"] == harness.planned_jobs(10, 2)
    assert result.data["peak_rss_bytes"] > 0


@pytest.mark.slow
def test_resume_scenario_tiny(workspace: Workspace) -> None:
    result = scenarios_scale.scenario_resume(
        workspace, entries=10, on_disk=0.8, concurrency=2
    )
    assert result.data["files"] == 30
    assert result.data["on_disk"] == 24
    assert result.data["build"]["requests"] == 6
    assert result.data["build"]["first_request_s"] > 0
    assert len(result.rows) == 2


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.skipif(not HAS_REDIS_SERVER, reason="needs redis-server")
@pytest.mark.skipif(
    not scenarios_scale.queue_available(), reason="the Redis queue is not built yet"
)
def test_redis_scenario_tiny(workspace: Workspace) -> None:
    result = scenarios_scale.scenario_redis(
        workspace, jobs=12, instances=2, concurrency=2
    )
    assert column(result, "files") == ["12", "12"]
    for run in result.data["runs"]:
        assert run["drain_commands_per_job"] > 0


@pytest.mark.slow
def test_run_script_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "run.py"),
            "scale",
            "--rows",
            "10",
            "--json",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Machine:" in completed.stdout
    assert "| jobs planned" in completed.stdout
    document = json.loads(output.read_text())
    assert document["machine"]["logical_cores"] >= 1
    assert document["results"][0]["name"] == "scale"
