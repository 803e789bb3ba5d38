"""Notebook 02: PDFs to clean text (``pdf``), token chunks (``chunking``), a teacher LLM's
triples (``teacher``), deduplicated, leak-checked splits and their card (``build``, ``leakage``),
importers for other shapes (``importers``), and raw text for notebook 03 (``corpus``)."""
from helpers.dataset.build import DatasetConfig, build_dataset, default_dataset, input_pdfs
from helpers.dataset.corpus import read_text_corpus
from helpers.dataset.leakage import LeakageError, measure_leakage, training_passages
from helpers.dataset.teacher import load_prompt

__all__ = ["DatasetConfig", "LeakageError", "build_dataset", "default_dataset", "input_pdfs", "load_prompt",
           "measure_leakage", "read_text_corpus", "training_passages"]
