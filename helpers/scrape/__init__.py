"""Notebook 01: find and download arXiv papers, and the recorded arXiv server that lets SMOKE runs
and tests scrape offline (``recorded``).

Modules: ``config`` (what to search), ``feed`` (the Atom feed), ``client`` (polite HTTP, paging and
retries), ``pdfs`` (download checks), ``step`` (``scrape`` and ``run_for_notebook``), ``errors``."""
from helpers.scrape.config import ScrapeConfig, build_search_query
from helpers.scrape.step import run_for_notebook, scrape

__all__ = ["ScrapeConfig", "build_search_query", "run_for_notebook", "scrape"]
