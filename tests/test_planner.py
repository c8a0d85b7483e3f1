"""The planner: one job per file, and duplicate rows with an empty definition."""

from __future__ import annotations

import csv
from pathlib import Path

import esl_assets
from esl_assets.jobs import AssetKind, Job, Status
from esl_assets.planner import Planner, build_request_template
from esl_assets.rows import RejectedRow, Row
from esl_assets.settings import Settings

#: The WordNet sample dictionary, also in the shared test data.
SAMPLE_CSV = Path(__file__).parent / "data" / "sample.csv"
ALL_KINDS = frozenset(AssetKind)


def plan(rows: list[Row | RejectedRow]) -> list[Job | RejectedRow]:
    settings = Settings(provider="local")
    planner = Planner(settings, build_request_template(settings), ALL_KINDS)
    return list(planner.plan(rows))


def row(uuid: str, definition: str, origin: str, definition_id: str = "1") -> Row:
    return Row(
        uuid=uuid,
        word=f"word-{uuid}",
        definition_id=definition_id,
        definition=definition,
        origin=origin,
    )


def test_text_replaces_empty_definition() -> None:
    items = plan(
        [
            row("u", "", "d.csv line 2"),
            row("v", "a dog", "d.csv line 3"),
            row("u", "a cat", "d.csv line 4"),
        ]
    )

    files = [item.file for item in items if isinstance(item, Job)]
    assert files == [
        "word_u_0.aac",
        "word_v_0.aac",
        "shortdef_v_1.aac",
        "image_v_1.png",
        "shortdef_u_1.aac",
        "image_u_1.png",
    ]
    jobs = {item.file: item for item in items if isinstance(item, Job)}
    assert jobs["shortdef_u_1.aac"].text == "a cat"
    rejected = [item for item in items if isinstance(item, RejectedRow)]
    assert len(rejected) == 1
    assert rejected[0].reason == "duplicate"
    assert rejected[0].origin == "d.csv line 2"
    assert "d.csv line 2:" in rejected[0].message
    assert "d.csv line 4 has a definition" in rejected[0].message


def test_empty_definition_planned_last() -> None:
    items = plan([row("u", "", "d.csv line 2"), row("v", "a dog", "d.csv line 3")])

    files = [item.file for item in items if isinstance(item, Job)]
    assert files == [
        "word_u_0.aac",
        "word_v_0.aac",
        "shortdef_v_1.aac",
        "image_v_1.png",
        "shortdef_u_1.aac",
        "image_u_1.png",
    ]
    assert not [item for item in items if isinstance(item, RejectedRow)]
    assert [item.text for item in items if isinstance(item, Job)][-2:] == ["", ""]


def test_sample_row_with_text_wins(tmp_path: Path) -> None:
    with SAMPLE_CSV.open(encoding="utf-8", newline="") as handle:
        records = list(csv.reader(handle))
    header, first = records[0], records[1]
    definition = header.index("definition")
    emptied = [*first[:definition], "", *first[definition + 1 :]]
    # The first row again, at the end and with its definition, after a copy
    # of it without one at the top.
    dictionary = tmp_path / "dup.csv"
    with dictionary.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, emptied, *records[2:10], first])
    uuid = first[header.index("uuid")]
    definition_id = first[header.index("id")]

    report = esl_assets.build(
        dictionary, outdir=tmp_path / "out", provider="local", dryrun=True
    )

    results = {result.file: result for result in report.results}
    for kind, extension in (("shortdef", "aac"), ("image", "png")):
        result = results[f"{kind}_{uuid}_{definition_id}.{extension}"]
        assert result.status is Status.DRYRUN
    assert report.count_reason("empty_text") == 0
    assert len(report.rejected) == 1
    message = report.rejected[0].message
    assert message.startswith("dup.csv line 2: ")
    assert "dup.csv line 11 has a definition" in message
