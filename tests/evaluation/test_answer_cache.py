"""helpers.evaluation.answer_cache: answers of the embedded model (with a real tiny adapter) kept between
runs: only new prompts are generated, the answers are generate_answers' own, a retrained adapter asks the
tuned model again but keeps the base's answers, and a store cut short by a crash still opens."""
import shutil

from helpers.common.generate import generate_answers
from helpers.evaluation.answer_cache import AnswerCache, adapter_fingerprint

EMBEDDED = "embedded/smollm2-135m-instruct"
SETTINGS = dict(max_new_tokens=6, batch_size=2, do_sample=False, temperature=0.7, top_p=0.9, seed=0,
                max_prompt_tokens=200)


def _prompts(tok, questions):
    return [tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
            for q in questions]


def test_only_new_prompts_are_generated_and_the_base_survives_a_new_adapter(tuned_model, adapter, tmp_path):
    model, tok = tuned_model
    p = _prompts(tok, ["What is the capital of France?", "Name a colour.", "Count to three."])
    cache = AnswerCache(tmp_path / "c.jsonl", EMBEDDED, adapter)
    first = cache.generate("tuned", model, tok, p[:2], **SETTINGS)
    assert first["answers"] == generate_answers(model, tok, p[:2], **SETTINGS)["answers"]
    assert (cache.generated, cache.reused) == (2, 0) and first["cached"] == 0
    again = AnswerCache(tmp_path / "c.jsonl", EMBEDDED, adapter).generate("tuned", model, tok, p, **SETTINGS)
    assert again["cached"] == 2 and again["answers"][:2] == first["answers"] and again["answers"][2]
    other = AnswerCache(tmp_path / "c.jsonl", EMBEDDED, adapter).generate("tuned", model, tok, p[:2],
                                                                          **{**SETTINGS, "max_new_tokens": 7})
    assert other["cached"] == 0  # another setting is another answer

    retrained = tmp_path / "adapter2"
    shutil.copytree(adapter, retrained)
    weights = next(retrained.glob("adapter_model*"))
    weights.write_bytes(weights.read_bytes() + b" ")
    assert adapter_fingerprint(retrained) != adapter_fingerprint(adapter)
    cache = AnswerCache(tmp_path / "c.jsonl", EMBEDDED, adapter)
    with model.disable_adapter():
        cache.generate("base", model, tok, p[:1], **SETTINGS)
    new = AnswerCache(tmp_path / "c.jsonl", EMBEDDED, retrained)
    assert new.key("base", p[0], SETTINGS) == cache.key("base", p[0], SETTINGS)
    assert new.key("tuned", p[0], SETTINGS) != cache.key("tuned", p[0], SETTINGS)


def test_a_store_cut_short_opens_without_its_torn_line(tuned_model, adapter, tmp_path):
    model, tok = tuned_model
    p = _prompts(tok, ["Say hello."])
    AnswerCache(tmp_path / "c.jsonl", EMBEDDED, adapter).generate("tuned", model, tok, p, **SETTINGS)
    with open(tmp_path / "c.jsonl", "a") as fh:
        fh.write('{"key": "abc", "answ')
    cache = AnswerCache(tmp_path / "c.jsonl", EMBEDDED, adapter)
    assert cache.generate("tuned", model, tok, p, **SETTINGS)["cached"] == 1
    assert "Answers: 0 generated, 1 reused from c.jsonl" in cache.line()
