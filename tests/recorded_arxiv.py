"""What the tests of notebook 01 (tests/scrape) share: the bundled arXiv recordings, configs that talk
to the recorded server of :mod:`helpers.scrape.recorded` quickly, and a log collector.

Nothing here reaches arXiv: the fixture server answers with the responses recorded from the export
API (helpers/resources/arxiv) and the real PDF, plus injected faults.
"""
import json
import xml.etree.ElementTree as ET

from helpers.common.resources import arxiv_fixture_dir
from helpers.scrape import ScrapeConfig

FIXTURES = arxiv_fixture_dir()
PDF_ID = "1111.2011v2"
FAST = dict(delay_seconds=0.05, backoff_seconds=0.05, max_retries=2, timeout=5.0)


def cfg_for(srv, **kw):
    """A config for the fixture server: no default filters, fast politeness."""
    base = dict(arxiv_api_url=srv.api_url, category="", date_from="", keywords=[], sort_by="relevance", **FAST)
    base.update(kw)
    return ScrapeConfig(**base)


def pdf_cfg(srv, **kw):
    return cfg_for(srv, id_list=[PDF_ID], max_results=10, page_size=10, **kw)


def recorded_ids(name_prefix):
    """Entry ids of a recorded response, read straight from the file (independent of our parser)."""
    path = next((FIXTURES / "api").glob(name_prefix + "_*.json"))
    root = ET.fromstring(json.loads(path.read_text())["body"])
    ns = "{http://www.w3.org/2005/Atom}"
    return [e.findtext(f"{ns}id").rsplit("/abs/", 1)[1] for e in root.findall(f"{ns}entry")]


def recorded(name_prefix) -> dict:
    """A recorded API response as stored: ``{"url", "status_code", "body"}``."""
    return json.loads(next((FIXTURES / "api").glob(name_prefix + "_*.json")).read_text())


class Logs(list):
    def __call__(self, msg):
        self.append(msg)

    def text(self):
        return "\n".join(self)
