"""The bundled real conversations: real, split without overlap, and the shipped split is the one the code builds."""
from helpers.common.resources import chitchat, chitchat_conversations, split_chitchat
from helpers.common.rows import held_out_turns
from helpers.core.jsonl import read_jsonl


def test_bundled_conversations_are_real_and_disjoint():
    convs = chitchat_conversations()
    assert len(convs) > 4000  # of 7,168: 3,150 are a single turn (one speaker only) and are skipped
    c = convs[0]
    assert c["messages"][0]["role"] == "user" and any(m["role"] == "assistant" for m in c["messages"])
    assert all(len(x["messages"]) <= 12 for x in convs[:200])
    train, test = split_chitchat(100, 20)
    assert not {t["id"] for t in train} & {t["id"] for t in test}
    held = held_out_turns(test)
    assert all(h["messages"][-1]["role"] == "assistant" for h in held)
    # the shipped split in helpers/resources/chitchat is what split_chitchat builds
    committed = read_jsonl(chitchat("test"))
    assert [r["id"] for r in committed] == [r["id"] for r in split_chitchat(800, 100)[1]]
