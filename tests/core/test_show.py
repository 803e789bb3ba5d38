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
