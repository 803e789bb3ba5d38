"""helpers.chat.documents: the "documents" preset's pieces on the bundled paper's chunks (the kit's own
PDF reader and chunker): where the chunks are found, the index or a one-line reason, the message with
its passages within a budget, and the sources line."""
from helpers.chat.documents import chunks_for_chat, load_chat_index, message_with_sources, sources_line
from helpers.common.run import RunDir
from helpers.evaluation import ChunkIndex
from helpers.evaluation.retrieval import QUESTION_RULE
from paper_chunks import paper_chunks, question, write_chunks


def test_the_index_loads_or_says_why_in_one_line(smol_tokenizer, tmp_path):
    lines = []
    assert load_chat_index(tmp_path / "chunks.jsonl", log=lines.append) is None
    assert lines == [f"Documents preset: not available (No chunks to retrieve from: {tmp_path / 'chunks.jsonl'} is "
                     "not there. Notebook 02 writes chunks.jsonl (the source chunks of your documents) beside "
                     "train.jsonl; run it, or set CHUNKS_PATH.)"]
    path = write_chunks(tmp_path / "chunks.jsonl", paper_chunks(smol_tokenizer))
    index = load_chat_index(path, log=lines.append)
    assert len(index) > 20 and lines[-1].startswith("Documents preset: BM25 index of")


def test_chunks_come_from_the_adapters_dataset_unless_given(tmp_path):
    run = tmp_path / "sft"
    (run / "adapter").mkdir(parents=True)
    assert chunks_for_chat("", run / "adapter", tmp_path / "ws.jsonl") == tmp_path / "ws.jsonl"
    RunDir.of(run / "adapter").update("metrics", {"config": {"dataset_path": str(tmp_path / "data" / "train.jsonl")}})
    assert chunks_for_chat("", run / "adapter", tmp_path / "ws.jsonl") == tmp_path / "ws.jsonl"  # none there
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chunks.jsonl").write_text("")
    assert chunks_for_chat("", run / "adapter", tmp_path / "ws.jsonl") == tmp_path / "data" / "chunks.jsonl"
    assert chunks_for_chat(str(tmp_path / "mine.jsonl"), run / "adapter", "x") == tmp_path / "mine.jsonl"


def test_the_message_carries_the_passages_and_the_sources_name_them(smol_tokenizer):
    chunks = paper_chunks(smol_tokenizer)
    index = ChunkIndex(chunks)
    q = question(chunks[6])
    text, used = message_with_sources(index, 2, q, smol_tokenizer, 2000)
    assert text.endswith(QUESTION_RULE + "\n" + q) and len(used) == 2 and used[0].chunk_id == chunks[6]["chunk_id"]
    assert sources_line(used) == f"sources: [1] 1111.2011v2.pdf #6, [2] {used[1].label}"
    small, few = message_with_sources(index, 2, q, smol_tokenizer, 60)
    assert len(smol_tokenizer(small)["input_ids"]) < len(smol_tokenizer(text)["input_ids"]) and len(few) <= 1
    assert message_with_sources(index, 2, "the of and", smol_tokenizer, 2000) == ("the of and", [])
    assert sources_line([]) == "sources: no passage of your documents matches this message"
