"""helpers.evaluation.judge_config: which judge the settings make (notebook 02's teacher endpoint, JUDGE_BASE_URL,
a local model, none), where its key comes from, and the settings' checks."""
import json
import warnings

import pytest

from fake_openai import API_KEY, FakeOpenAI
from helpers.core.config import ConfigError
from helpers.dataset import HttpTeacher, LocalTeacher
from helpers.evaluation.judge_config import JudgeConfig, make_judge, secret, teacher_endpoint


def dataset(tmp_path, teacher_url="", model="llama-3.3-70b"):
    d = tmp_path / "dataset"
    d.mkdir()
    (d / "test.jsonl").write_text('{"instruction": "q", "input": "", "output": "a"}\n')
    (d / "build_summary.json").write_text(json.dumps({"teacher_url": teacher_url, "teacher": {"teacher": model}}))
    return d / "test.jsonl"


def test_without_an_endpoint_there_is_no_judge_and_it_says_why(tmp_path):
    assert make_judge(JudgeConfig(), tmp_path / "nowhere" / "test.jsonl") == (
        None, "no judge endpoint: JUDGE_BASE_URL is empty and notebook 02's teacher was not an OpenAI-compatible "
              "endpoint")
    assert make_judge(JudgeConfig(), dataset(tmp_path))[0] is None  # a local teacher
    assert make_judge(JudgeConfig(judge="none"), tmp_path / "t.jsonl") == (None, "JUDGE='none'")


def test_the_teacher_endpoint_judges_with_the_teacher_key(tmp_path, monkeypatch):
    monkeypatch.delenv("JUDGE_API_KEY", raising=False)
    monkeypatch.setenv("TEACHER_API_KEY", API_KEY)
    with FakeOpenAI(reply=lambda m: '{"verdict": "correct"}') as fake:
        test = dataset(tmp_path, fake.base_url)
        assert teacher_endpoint(test) == (fake.base_url, "llama-3.3-70b")
        judge, why = make_judge(JudgeConfig(judge_max_new_tokens=50), test)
        assert why == "" and isinstance(judge.grader, HttpTeacher) and judge.grader is judge.comparer
        assert judge.name == "llama-3.3-70b" and "notebook 02's teacher endpoint" in judge.how
        assert judge.grader.complete([{"role": "user", "content": "hi"}]).text == '{"verdict": "correct"}'
        assert fake.bodies[-1]["max_tokens"] == 50 and fake.bodies[-1]["temperature"] == 0.0
        assert API_KEY not in repr(judge.grader) and API_KEY not in judge.how


def test_judge_settings_take_their_own_endpoint_model_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", API_KEY)
    monkeypatch.setenv("TEACHER_API_KEY", "the-teachers-key")
    with FakeOpenAI(reply=lambda m: "{}") as fake:
        cfg = JudgeConfig(judge="http", judge_base_url=fake.base_url, judge_model="judge-70b",
                          judge_key_secret="MY_JUDGE_KEY")
        judge, _ = make_judge(cfg, dataset(tmp_path, "http://teacher.invalid/v1"))
        assert judge.name == "judge-70b" and "JUDGE_BASE_URL" in judge.how
        judge.grader.complete([{"role": "user", "content": "hi"}])
        assert fake.headers_seen[-1]["Authorization"] == f"Bearer {API_KEY}"
    assert make_judge(JudgeConfig(judge="http", judge_base_url="http://x/v1"), tmp_path / "t.jsonl")[1] == \
        "no judge model: set JUDGE_MODEL to a model that http://x/v1 serves"


def test_a_local_judge_starts_its_answers_inside_the_json(tmp_path):
    judge, _ = make_judge(JudgeConfig(judge="local", local_judge_model="embedded/smollm2-135m-instruct"), tmp_path)
    assert isinstance(judge.grader, LocalTeacher) and judge.grader.prefill == '{"verdict": "'
    assert judge.comparer.prefill == '{"winner": "' and judge.grader.key_id != judge.comparer.key_id


def test_settings_are_checked_and_the_key_variable_is_no_near_miss(monkeypatch):
    with pytest.raises(ConfigError, match="JUDGE='maybe'"):
        JudgeConfig(judge="maybe").validate()
    with pytest.raises(ConfigError, match="JUDGE_MAX_NEW_TOKENS"):
        JudgeConfig(judge_max_new_tokens=2).validate()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = JudgeConfig.from_params({}, environ={"JUDGE_API_KEY": "k", "JUDGE_MODEL": "m"})
    assert cfg.judge_model == "m"
    smoke = JudgeConfig.from_params({}, environ={"SMOKE": "1"})
    assert smoke.judge == "local" and smoke.judge_max_examples == 1
    monkeypatch.setenv("SOME_SECRET", "v")
    assert secret("SOME_SECRET") == "v" and secret("NOT_SET_ANYWHERE_32") is None and secret("") is None
