"""Trace replay files: valid CSV and JSONL, and every malformed case reported as file:line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from aiosched.errors import AioschedError
from aiosched.loadgen import ModelLoad, TraceError, Workload, load_trace, parse_trace


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_with_deadlines(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "t.csv",
        "offset_s,model,deadline_ms\n0,a,50\n0.5,b,\n\n0.5,a,20.5\n2,b,100\n",
    )
    t = load_trace(p)
    assert len(t) == 4
    assert t.models == ("a", "b", "a", "b")
    assert t.model_names == ("a", "b")
    assert np.array_equal(t.offsets, [0.0, 0.5, 0.5, 2.0])
    assert t.deadlines_s[0] == pytest.approx(0.05)
    assert math.isnan(t.deadlines_s[1])
    assert t.deadlines_s[2] == pytest.approx(0.0205)
    assert t.lines == (2, 3, 5, 6)
    assert t.where(2) == f"{p}:5"


def test_csv_columns_in_any_order_and_without_deadline(tmp_path: Path) -> None:
    t = load_trace(write(tmp_path, "t.csv", "model,offset_s\na,0.1\nb,0.2\n"))
    assert t.models == ("a", "b")
    assert np.array_equal(t.offsets, [0.1, 0.2])
    assert np.all(np.isnan(t.deadlines_s))


def test_jsonl(tmp_path: Path) -> None:
    text = (
        '{"offset_s": 0, "model": "a", "deadline_ms": 30}\n'
        "\n"
        '{"offset_s": 1.5, "model": "b"}\n'
        '{"offset_s": 2, "model": "a", "deadline_ms": null}\n'
    )
    t = load_trace(write(tmp_path, "t.jsonl", text))
    assert t.models == ("a", "b", "a")
    assert t.lines == (1, 3, 4)
    assert t.deadlines_s[0] == pytest.approx(0.03)
    assert math.isnan(t.deadlines_s[1]) and math.isnan(t.deadlines_s[2])


def test_format_is_sniffed_without_a_known_suffix(tmp_path: Path) -> None:
    assert len(load_trace(write(tmp_path, "t.txt", '{"offset_s": 0, "model": "a"}\n'))) == 1
    assert len(load_trace(write(tmp_path, "u.txt", "offset_s,model\n0,a\n"))) == 1
    assert len(parse_trace(["", '{"offset_s": 0, "model": "a"}'])) == 1


CSV_ERRORS = [
    ("", 1, "empty trace"),
    ("offset_s,model\n", 1, "no requests"),
    ("offset,model\n0,a\n", 1, "unknown column 'offset'"),
    ("offset_s,deadline_ms\n0,5\n", 1, "no 'model' column"),
    ("model,deadline_ms\na,5\n", 1, "no 'offset_s' column"),
    ("offset_s,model,model\n0,a,b\n", 1, "named twice"),
    ("offset_s,model\n0,a\n1,b,3\n", 3, "expected 2 fields"),
    ("offset_s,model\n0,a\nsoon,b\n", 3, "offset_s must be a number, got 'soon'"),
    ("offset_s,model\n-1,a\n", 2, "offset_s must be a finite number >= 0"),
    ("offset_s,model\nnan,a\n", 2, "offset_s must be a finite number >= 0"),
    ("offset_s,model\ninf,a\n", 2, "offset_s must be a finite number >= 0"),
    ("offset_s,model\n0,a\n2,a\n\n1,b\n", 5, "before the previous entry's 2 (line 3)"),
    ("offset_s,model\n0, \n", 2, "model must be a non-empty string"),
    ("offset_s,model,deadline_ms\n0,a,0\n", 2, "deadline_ms must be a positive number"),
    ("offset_s,model,deadline_ms\n0,a,-5\n", 2, "deadline_ms must be a positive number"),
    ("offset_s,model,deadline_ms\n0,a,fast\n", 2, "deadline_ms must be a number, got 'fast'"),
]


@pytest.mark.parametrize(("text", "line", "message"), CSV_ERRORS)
def test_csv_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    p = write(tmp_path, "bad.csv", text)
    with pytest.raises(TraceError) as info:
        load_trace(p)
    assert str(info.value).startswith(f"{p}:{line}: ")
    assert message in str(info.value)


JSONL_ERRORS = [
    ('{"offset_s": 0, "model": "a"}\n{"offset_s": 1, "model": "a"\n', 2, "invalid JSON"),
    ('[0, "a"]\n', 1, "expected a JSON object, got list"),
    ('{"offset_s": 0}\n', 1, "missing 'model'"),
    ('{"model": "a"}\n', 1, "missing 'offset_s'"),
    ('{"offset_s": 0, "model": "a", "slo": 3}\n', 1, "unknown key 'slo'"),
    ('{"offset_s": true, "model": "a"}\n', 1, "offset_s must be a number"),
    ('{"offset_s": [1], "model": "a"}\n', 1, "offset_s must be a number"),
    ('{"offset_s": 0, "model": 3}\n', 1, "model must be a non-empty string"),
    ('{"offset_s": 0, "model": "a", "deadline_ms": "x"}\n', 1, "deadline_ms must be a number"),
    ('{"offset_s": 1, "model": "a"}\n\n{"offset_s": 0.5, "model": "a"}\n', 3, "non-decreasing"),
    ("\n\n", 1, "no requests"),
]


@pytest.mark.parametrize(("text", "line", "message"), JSONL_ERRORS)
def test_jsonl_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    p = write(tmp_path, "bad.jsonl", text)
    with pytest.raises(TraceError) as info:
        load_trace(p)
    assert str(info.value).startswith(f"{p}:{line}: ")
    assert message in str(info.value)


def test_trace_error_is_typed() -> None:
    with pytest.raises(TraceError) as info:
        parse_trace(["offset_s,model", "x,a"], source="mem.csv")
    assert str(info.value) == "mem.csv:2: offset_s must be a number, got 'x'"
    assert isinstance(info.value, AioschedError)
    assert isinstance(info.value, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.csv"
    with pytest.raises(TraceError, match=r"nope\.csv: cannot read the trace"):
        load_trace(p)


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "bin.csv"
    p.write_bytes(b"offset_s,model\n0,\xff\xfe\n")
    with pytest.raises(TraceError, match="not UTF-8"):
        load_trace(p)


def test_unknown_model_is_reported_at_its_line(tmp_path: Path) -> None:
    p = write(tmp_path, "t.csv", "offset_s,model\n0,a\n0.1,vgg\n")
    workload = Workload((ModelLoad("a"), ModelLoad("b")))
    with pytest.raises(TraceError) as info:
        workload.replay(load_trace(p))
    assert str(info.value) == f"{p}:3: unknown model 'vgg' (the workload has a, b)"
