"""Notices nobody can miss: a framed box, wrapped, printed outside a notebook and returned."""
from helpers.core.show import announce, box_text


def test_box_wraps_long_lines_and_frames_every_line():
    text = box_text("Teacher stopped", ["row 12 of train.jsonl: " + "a very long reason " * 12, ""], width=60)
    lines = text.splitlines()
    assert lines[0] == lines[-1] and set(lines[0]) == {"!"}
    assert all(len(line) == len(lines[0]) for line in lines)
    assert len(lines[0]) <= 60 + 2  # body wrapped to width - 4, framed by "!! " and " !!"
    assert lines[1].startswith("!! TEACHER STOPPED")
    words = " ".join(line.strip("! ") for line in lines[3:-1]).split()
    assert words == ("row 12 of train.jsonl: " + "a very long reason " * 12).split()  # nothing lost in the wrap


def test_announce_prints_the_box_outside_a_notebook(capsys):
    said = announce("Disk full", "Free some space on Drive, then rerun this cell.", kind="error")
    assert capsys.readouterr().out == said + "\n"
    assert "Free some space on Drive" in said


def test_box_wraps_and_frames_every_line():
    text = box_text("Title", ["x " * 80, "short"])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1 and all(line.startswith("!!") for line in lines)


def test_markdown_head_cuts_a_long_document_before_a_section_and_names_the_rest(capsys):
    from pathlib import Path

    from helpers.core.show import markdown_head, show_markdown
    path = Path(__file__).resolve().parents[2] / "bench" / "QUALITY.md"  # a real long Markdown file
    text = path.read_text()
    head = markdown_head(text, 3000, path)
    body, note = head.rstrip().rsplit("\n\n", 1)
    assert len(body) <= 3000 and text.startswith(body)  # the document's start, unchanged
    assert text[len(body):].lstrip("\n").startswith("## ")  # cut right before a section, not mid-sentence
    left_out = [line[3:].strip() for line in text[len(body):].splitlines() if line.startswith("## ")]
    assert note == f"*Left out here: {'; '.join(left_out)}: the whole of it is in `{path}`.*"
    assert markdown_head("# Short\n\nWhole.", 3000) == "# Short\n\nWhole."
    show_markdown("# Title\n\n| a |\n|---|")  # outside a notebook: printed as it is
    assert capsys.readouterr().out == "# Title\n\n| a |\n|---|\n"
