"""Notebook 02: PDFs to clean text (``pdf``), token chunks (``chunking``), a teacher LLM's
triples (``teacher``), graded and curated (``grading``), deduplicated, leak-checked splits and their
card (``build``, ``leakage``), importers for other shapes (``importers``), and raw text for notebook 03
(``corpus``). Notebook 05's judge asks through the same cached machinery (``grading_ask``)."""
from helpers.dataset.build import DatasetConfig, build_dataset, default_dataset, input_pdfs
from helpers.dataset.corpus import read_text_corpus
from helpers.dataset.grading import curation_lines, fill, load_grade_prompt, load_prompt_file, read_json_reply
from helpers.dataset.grading_ask import Ask, ask_all, estimate, estimate_line, make_ask
from helpers.dataset.leakage import LeakageError, measure_leakage, training_passages
from helpers.dataset.teacher import (HttpTeacher, LocalTeacher, TeacherError, TeacherStop, TeacherStore,
                                     load_prompt)

__all__ = ["Ask", "DatasetConfig", "HttpTeacher", "LeakageError", "LocalTeacher", "TeacherError", "TeacherStop",
           "TeacherStore", "ask_all", "build_dataset", "curation_lines", "default_dataset", "estimate",
           "estimate_line", "fill", "input_pdfs", "load_grade_prompt", "load_prompt", "load_prompt_file", "make_ask",
           "measure_leakage", "read_json_reply", "read_text_corpus", "training_passages"]
