"""batch.map's sources: format by name, paths kept under the root, records with their index."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskservice.errors import ParamRefused
from taskservice.settings import Settings
from taskservice.worker.failures import DoNotRetry
from taskservice.worker.library.batch_source import Record, file_path, records, source_format


def test_the_format_comes_from_the_name_unless_given() -> None:
    assert source_format("file:a/b.JSONL", None) == "jsonl"
    assert source_format("https://x.example/items.ndjson?sig=1", None) == "jsonl"
    assert source_format("file:rows.csv", None) == "csv"
    assert source_format("file:rows.txt", "csv") == "csv"
    with pytest.raises(ParamRefused) as refused:
        source_format("file:rows.txt", None)
    assert refused.value.loc == ("format",)


@pytest.mark.parametrize(
    "source", ["file:../x.csv", "file:/etc/passwd", "file:a/../../x.csv", "file:"]
)
def test_paths_outside_the_root_are_refused(tmp_path: Path, source: str) -> None:
    settings = Settings.model_construct(files_root=tmp_path)
    with pytest.raises(ParamRefused) as refused:
        file_path(source, settings)
    assert refused.value.loc == ("source",)


def test_file_sources_need_a_root() -> None:
    with pytest.raises(ParamRefused, match="TASKSERVICE_FILES_ROOT is unset"):
        file_path("file:a.csv", Settings.model_construct(files_root=None))


def test_json_lines_keep_their_index_and_blank_lines_do_not_count() -> None:
    data = b'{"a": 1}\n\n[1]\nnope\n{"a": 2}'
    got = list(records(data, "jsonl"))
    assert [r.index for r in got] == [0, 1, 2, 3]
    assert got[0] == Record(0, fields={"a": 1})
    assert got[1].error is not None
    assert "JSON object" in got[1].error
    assert got[2].error is not None
    assert got[2].error.startswith("not JSON")
    assert got[3] == Record(3, fields={"a": 2})


def test_csv_rows_under_a_header_with_empty_cells_left_out() -> None:
    data = "\ufeffa,b\n1,\n2,x,extra\n3,y\n".encode()
    assert list(records(data, "csv")) == [
        Record(0, fields={"a": "1"}),
        Record(1, error="the row has more cells than the header"),
        Record(2, fields={"a": "3", "b": "y"}),
    ]


def test_a_source_that_is_not_utf8_fails_without_retry() -> None:
    with pytest.raises(DoNotRetry):
        list(records(b"\xff\xfe{", "jsonl"))
