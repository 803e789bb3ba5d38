"""The recorded arXiv server on 127.0.0.1 that the tests of notebook 01 talk to."""
import pytest

from recorded_arxiv import FIXTURES

from helpers.scrape.recorded import FixtureServer


@pytest.fixture
def server():
    with FixtureServer(FIXTURES) as srv:
        yield srv
