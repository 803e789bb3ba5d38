"""helpers.dataset.chunking with the real tokenizers (SmolLM2's and Llama 3's) on the real arXiv paper."""
import re

import pytest

from helpers.common import resources as fixtures
from offline import llama3_tokenizer_dir
from helpers.dataset.chunking import ChunkError, chunk_documents, chunk_text, split_sentences

PAPER = fixtures.fixture_pdf()


@pytest.fixture(scope="module", params=["smollm2", "llama3"])
def tok(request):
    if request.param == "smollm2":
        from helpers.common.models import load_tokenizer
        return load_tokenizer("embedded/smollm2-135m-instruct")
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(llama3_tokenizer_dir()))


@pytest.fixture(scope="module")
def paper_text():
    from helpers.dataset.pdf import read_pdf
    return read_pdf(PAPER).text


def _words(s):
    return re.findall(r"\S+", s)


def test_chunks_fit_cover_the_text_and_overlap(tok, paper_text):
    chunks = chunk_text(paper_text, tok, max_tokens=200, overlap_tokens=40, source="1111.2011v2.pdf")
    assert len(chunks) > 10
    for c in chunks:
        assert c.tokens == len(tok(c.text, add_special_tokens=False)["input_ids"]) <= 200
        assert c.source == "1111.2011v2.pdf"
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert len({c.id for c in chunks}) == len(chunks)
    # every sentence of the text is in some chunk: nothing lost at the cuts
    joined = "\n".join(c.text for c in chunks)
    for para in paper_text.split("\n\n"):
        for s in split_sentences(para) if "\n" not in para else para.split("\n"):
            assert s.strip() in joined
    # consecutive chunks share whole sentences (overlap) and start on a sentence or paragraph
    shared = 0
    for a, b in zip(chunks, chunks[1:]):
        first = split_sentences(b.text.split("\n\n")[0])[0]
        shared += first in a.text
        pos = paper_text.find(b.text[:60])
        assert pos >= 0
        before = paper_text[:pos].rstrip(" ")
        assert before.endswith(("\n", ".", "!", "?", ")", "\"", "\u201d")), b.text[:60]
    assert shared >= len(chunks) // 2
    # every cut ends a sentence, a paragraph or a line of a block: never inside a word
    for c in chunks:
        tail = c.text[-60:]
        end = paper_text.find(tail) + len(tail)
        assert end == len(paper_text) or paper_text[end] in " \n", tail


def test_token_budget_is_the_target_models(paper_text):
    from transformers import AutoTokenizer
    from helpers.common.models import load_tokenizer
    smol = chunk_text(paper_text, load_tokenizer("embedded/smollm2-135m-instruct"), 256, 0)
    llama = chunk_text(paper_text, AutoTokenizer.from_pretrained(str(llama3_tokenizer_dir())), 256, 0)
    # Llama 3's 128k vocabulary packs this text in fewer tokens than SmolLM2's 49k one
    assert sum(c.tokens for c in llama) < sum(c.tokens for c in smol)
    assert len(llama) <= len(smol)


def test_paragraph_boundaries_preferred_and_long_sentences_cut(tok):
    para = " ".join(f"Sentence number {i} talks about rotors and lattices." for i in range(12))
    text = "\n\n".join([para] * 4)
    chunks = chunk_text(text, tok, max_tokens=200, overlap_tokens=0)
    assert all(c.text.endswith("lattices.") for c in chunks)
    assert sum(c.text.count("Sentence number 0 ") for c in chunks) == 4  # each paragraph once
    long = "word " * 600
    pieces = chunk_text(long.strip() + ".", tok, max_tokens=100, overlap_tokens=0)
    assert len(pieces) >= 3 and all(p.tokens <= 100 for p in pieces)
    assert sum(len(_words(p.text)) for p in pieces) == 600


def test_bad_settings(tok):
    with pytest.raises(ChunkError, match="overlap_tokens=300"):
        chunk_text("Some text.", tok, max_tokens=512, overlap_tokens=300)
    with pytest.raises(ChunkError, match="max_tokens=8"):
        chunk_text("Some text.", tok, max_tokens=8)


def test_max_chunks_spreads_over_documents(tok):
    docs = [{"source": f"d{i}.pdf", "text": "\n\n".join(f"Doc {i} paragraph {j} is here." for j in range(40))}
            for i in range(3)]
    few = chunk_documents(docs, tok, max_tokens=20, overlap_tokens=0, max_chunks=4)
    assert [(c.source, c.index) for c in few] == [("d0.pdf", 0), ("d0.pdf", 1), ("d1.pdf", 0), ("d2.pdf", 0)]


def test_sentence_splitter_keeps_abbreviations():
    assert split_sentences("As in Fig. 2 and Eq. (3), see Murray et al. and J. M. Smith. It holds. "
                           "Next, e.g. this.") == ["As in Fig. 2 and Eq. (3), see Murray et al. and J. M. Smith.",
                                                   "It holds.", "Next, e.g. this."]
