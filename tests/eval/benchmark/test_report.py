"""The table: row order, bold best values, the CSV."""

from __future__ import annotations

from sise.eval.benchmark.paper import PaperComparison
from sise.eval.benchmark.report import format_table


def test_table_layout() -> None:
    values = {
        "ebpg": {"gradcam": 50.0, "sise": 60.5},
        "drop": {"gradcam": 30.0, "sise": 40.0},
        "increase": {"gradcam": 20.0, "sise": 20.001},
        "deletion": {"gradcam": 12.0, "sise": None},
        "seconds": {"gradcam": 0.1, "sise": 2.0},
    }
    markdown, table_csv = format_table(
        values,
        ["sise", "gradcam"],
        ["drop", "ebpg", "increase", "deletion"],
        {"gradcam": 3, "sise": 3},
    )
    lines = markdown.splitlines()
    assert lines[0] == "| Metric | Grad-CAM | SISE |"  # paper order, whatever order was asked
    assert [line.split(" |")[0] for line in lines[2:]] == [
        "| EBPG (%) ↑",
        "| Drop% ↓",
        "| Increase% ↑",
        "| Deletion AUC (%) ↓",
        "| Seconds / pair ↓",
        "| Pairs",
    ]
    assert lines[2] == "| EBPG (%) ↑ | 50.00 | **60.50** |"
    assert lines[3] == "| Drop% ↓ | **30.00** | 40.00 |"  # lower is better
    assert lines[4] == "| Increase% ↑ | **20.00** | **20.00** |"  # tie at printed precision
    assert lines[5] == "| Deletion AUC (%) ↓ | 12.00 | – |"  # nothing to compare with
    assert lines[6] == "| Seconds / pair ↓ | **0.100** | 2.000 |"
    assert table_csv.splitlines()[0] == "metric,Grad-CAM,SISE"
    assert table_csv.splitlines()[1] == "EBPG (%) ↑,50.0,60.5"


def test_paper_rows_under_the_measured_ones() -> None:
    values = {"ebpg": {"gradcam": 50.0, "sise": 61.0}, "miou": {"gradcam": 20.0, "sise": 30.0}}
    errors = {"ebpg": {"gradcam": 1.0, "sise": 0.5}, "miou": {"gradcam": 1.0, "sise": 1.0}}
    paper = {"sise": {"ebpg": PaperComparison(60.54, 61.0, 0.5)}}
    markdown, table_csv = format_table(
        values, ["sise", "gradcam"], ["ebpg", "miou"], errors=errors, paper=paper
    )
    lines = markdown.splitlines()
    assert lines[2] == "| EBPG (%) ↑ | 50.00 ± 1.00 | **61.00 ± 0.50** |"
    assert lines[3] == "| ↳ paper |  | 60.54 (+0.46 ✓) |"  # |0.46| <= 2 × 0.5
    assert lines[4].startswith("| mIoU (%) ↑ |")  # no published value, no paper row
    assert "↳ paper: the value the paper publishes" in markdown
    rows = table_csv.splitlines()
    assert rows[3:6] == [
        "EBPG (%) ↑ paper,,60.54",
        f"EBPG (%) ↑ difference,,{61.0 - 60.54!r}",
        "EBPG (%) ↑ within 2 SE,,True",
    ]
    missed = {"sise": {"ebpg": PaperComparison(60.54, 61.0, 0.2)}}
    markdown, table_csv = format_table(values, ["sise"], ["ebpg"], errors=errors, paper=missed)
    assert "| ↳ paper | 60.54 (+0.46 ✗) |" in markdown
    assert "EBPG (%) ↑ within 2 SE,False" in table_csv.splitlines()
    assert "↳ paper" not in format_table(values, ["sise"], ["ebpg"], errors=errors)[0]
