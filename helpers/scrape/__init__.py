"""Notebook 01: find and download arXiv papers (``arxiv``), and the recorded arXiv server that
lets SMOKE runs and tests scrape offline (``recorded``)."""
from helpers.scrape.arxiv import ScrapeConfig, build_search_query, run_for_notebook, scrape

__all__ = ["ScrapeConfig", "build_search_query", "run_for_notebook", "scrape"]
