"""The journal: entries read back as written, and a torn last line never eats the next entry."""

from __future__ import annotations

import json
from pathlib import Path

from osmosis_workbench.engine.journal import JOURNAL_FILE, JournalEntry, JournalWriter, read_journal
from osmosis_workbench.engine.outcome import OutcomeStatus, RolloutOutcome, Verdict


def entry(row: int) -> JournalEntry:
    outcome = RolloutOutcome(
        rollout_id=f"r{row}", status=OutcomeStatus.COMPLETED, final_messages=[], reward=1.0
    )
    return JournalEntry(row=row, attempt=0, verdict=Verdict.PASS, outcome=outcome)


def write(path: Path, *rows: int) -> JournalWriter:
    writer = JournalWriter(path)
    for row in rows:
        writer.write(entry(row))
    writer.close()
    return writer


def test_a_whole_last_entry_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    path.write_text(
        json.dumps(entry(0).to_json()) + "\n" + json.dumps(entry(1).to_json()), encoding="utf-8"
    )
    assert write(path, 2).torn_bytes == 0
    assert sorted(read_journal(tmp_path)) == [(0, 0), (1, 0), (2, 0)]


def test_a_torn_fragment_is_cut_off_and_counted(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE
    whole = json.dumps(entry(0).to_json()) + "\n"
    path.write_text(whole + '{"row": 1, "attempt": 0, "rollout_id": "r1", "sta', encoding="utf-8")
    assert write(path, 1).torn_bytes == len('{"row": 1, "attempt": 0, "rollout_id": "r1", "sta')
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["row"] for line in lines] == [0, 1]


def test_an_entry_reads_back_as_written(tmp_path: Path) -> None:
    written = entry(3)
    writer = JournalWriter(tmp_path / JOURNAL_FILE)
    writer.write(written)
    writer.close()
    assert read_journal(tmp_path)[(3, 0)] == written
