"""The report's Markdown, from a real report of the tiny adapter: the table with intervals, the
general section, the leakage line, the answers side by side, and report.md as written."""
import json
from pathlib import Path

from helpers.evaluation.markdown import (general_markdown, leakage_line, metrics_table, report_files, report_markdown,
                                        side_by_side)


def test_the_markdown_parts_of_a_real_report(report):
    table = metrics_table(report).splitlines()
    assert table[0] == "| metric | base | tuned | tuned − base | verdict |" and len(table) == 2 + len(report["metrics"])
    ppl = report["metrics"]["perplexity"]
    row = next(line for line in table if line.startswith("| perplexity of the references (reply tokens) ↓ |"))
    lo, hi = ppl["base"]["ci"]
    assert f"| {ppl['base']['value']:.2f} [{lo:.2f}, {hi:.2f}] |" in row and row.endswith(f"| {ppl['verdict']} |")
    general = metrics_table(report, report["general"]["metrics"])
    assert "| glued / implausible words (share) ↓ |" in general and "| ROUGE-2 F1" not in general
    assert leakage_line(report).startswith("Leakage: 0 of 4 test rows (0%)")
    assert leakage_line({"leakage": {"skipped": "not measured: x"}}) == "Leakage: not measured: x."
    g = general_markdown(report)
    assert g.startswith(f"**General ability: {report['general']['held']['outcome']}.** General perplexity ")
    assert general_markdown({"general": {"skipped": "GENERAL_PATH='none'"}}) == "General ability: GENERAL_PATH='none'."
    sides = side_by_side(report, width=10)
    assert sides.count("#### Example ") == len(report["examples"]) == 2
    first = report["examples"][0]
    assert f"**reference:** {' '.join(first['reference'].split())[:4]}" in sides
    # a conversation, not template text: the turns from their first word, cut with a mark, no UUID heading
    assert "<|im_start|>" not in sides and "> **user:** " in sides and "…" in sides
    user = next(t["content"] for t in first["turns"] if t["role"] == "user")
    assert sides.startswith(f"#### Example 1: {user.split()[0]}") and (first["id"] or "no id") not in sides
    assert f"**base** (ROUGE-L {first['base_rougeL']:.2f}" in sides
    whole = side_by_side(report)
    assert f"> **user:** {' '.join(user.split())}" in whole


def test_report_md_is_the_markdown_of_report_json(report):
    """report.md as written equals report_markdown of the saved report.json, with the plots relative."""
    out_dir = Path(report["files"]["json"]).parent
    saved = json.loads((out_dir / "report.json").read_text())
    md = report_markdown(saved, out_dir)
    assert md == (out_dir / "report.md").read_text()
    assert "![eval_metrics](plots/eval_metrics.png)" in md
    assert md.startswith(f"# Base vs tuned: {report['model_name']} + {report['adapter_dir']}\n")


def test_report_files_are_readable_lines_not_a_dict(report):
    text = report_files(report)
    lines = text.splitlines()
    out_dir = Path(report["files"]["json"]).parent
    assert lines[0] == f"The report is in {out_dir}:" and "{" not in text
    assert any(line.split()[0] == "report.md" and "with its plots" in line for line in lines[1:])
    assert {line.split()[0] for line in lines[1:]} == {Path(p).name for p in report["files"].values()
                                                       if Path(p).exists()}
    assert report_files({"files": {}}) == "No report files were written."
