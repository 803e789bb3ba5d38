"""The evaluation report in Markdown: the base-vs-tuned table with intervals, the general-ability
(forgetting) section, the leakage line, the retrieval baseline, the answers side by side, and report.md
around them."""
from __future__ import annotations

import os
from pathlib import Path

from helpers.common.transcript import Answer, conversation_markdown, heading


def _fmt(x: float, name: str) -> str:
    if name == "perplexity":
        return f"{x:.2f}"
    if name == "answer_words":
        return f"{x:.1f}"
    return f"{x:.3f}"


def _cell(d: dict, name: str, signed: bool = False) -> str:
    v = d["value"]
    s = ("+" if signed and v >= 0 else "") + _fmt(v, name)
    if "ci" in d:
        lo, hi = d["ci"]
        lo_s = ("+" if signed and lo >= 0 else "") + _fmt(lo, name)
        hi_s = ("+" if signed and hi >= 0 else "") + _fmt(hi, name)
        s += f" [{lo_s}, {hi_s}]"
    return s


def metrics_table(report: dict, metrics: dict | None = None) -> str:
    """The base-vs-tuned table in Markdown: value [95% CI] for each model and the difference
    (``metrics``: another section's, e.g. ``report["general"]["metrics"]``; default the in-domain)."""
    lines = ["| metric | base | tuned | tuned − base | verdict |", "|---|---|---|---|---|"]
    for name, m in (metrics if metrics is not None else report["metrics"]).items():
        arrow = {True: " ↑", False: " ↓", None: ""}[m["higher_is_better"]]
        lines.append(f"| {m['label']}{arrow} | {_cell(m['base'], name)} | {_cell(m['tuned'], name)} | "
                     f"{_cell(m['diff'], name, signed=True)} | {m['verdict']} |")
    return "\n".join(lines)


def side_by_side(report: dict, width: int = 600) -> str:
    """The sample answers in Markdown, each as a conversation (helpers.common.transcript): a heading
    with the question's first words, the system and user turns, the reference, then the base and the
    tuned answer with their ROUGE-L, every text cut at a word with "…" and an answer the model was
    cut at its token limit marked so."""
    out = []
    for ex in report["examples"]:
        turns = ex.get("turns") or [{"role": "user", "content": ex.get("question") or ex["prompt"]}]
        user = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
        answers = [Answer(w, ex[w], ex.get(f"{w}_stop_rate", 1.0) >= 1.0, f"ROUGE-L {ex[f'{w}_rougeL']:.2f}")
                   for w in ("base", "tuned")]
        title = f"{heading(ex['index'] + 1, user)} (held-out row {ex['index'] + 1})"
        out.append(conversation_markdown(turns, answers, ex["reference"], title, width))
    return "\n".join(out)


FILE_WORDS = {"markdown": "the report as you read it here, with its plots",
              "json": "every figure of the report, for scripts",
              "answers": "each held-out prompt with both answers and their scores",
              "general_answers": "the general prompts' answers (the forgetting check)",
              "answer_cache": "every answer generated: a rerun generates only what is new"}


def report_files(report: dict) -> str:
    """Where the report went: the folder, then one line per file that exists, with what it holds."""
    files = {k: Path(v) for k, v in (report.get("files") or {}).items() if Path(v).exists()}
    if not files:
        return "No report files were written."
    folder = next(iter(files.values())).parent
    w = max(len(p.name) for p in files.values())
    return "\n".join([f"The report is in {folder}:"] + [f"  {p.name:<{w}}  {FILE_WORDS.get(k, '')}".rstrip()
                                                      for k, p in files.items()])


def leakage_line(report: dict) -> str:
    """The leakage figure in one line, for the notebook and the Markdown report."""
    lk = report.get("leakage") or {}
    if "skipped" in lk:
        return f"Leakage: {lk['skipped']}."
    text = f"Leakage: {lk['line']} ({lk['train_path']}; {lk['passages']})"
    if lk.get("same_file"):
        text += "; the test set IS the training set"
    return text + (f"; {lk['dropped']} left out of the scores (DROP_LEAKED)." if lk.get("dropped") else
                   "; reported only, all rows scored." if lk.get("flagged") else ".")


def general_markdown(report: dict) -> str:
    """The forgetting section in Markdown: what the general set is, the one-line verdict, the table."""
    g = report.get("general") or {}
    if "skipped" in g:
        return f"General ability: {g['skipped']}."
    line = g["held"]["line"][0].upper() + g["held"]["line"][1:]
    lines = [f"**General ability: {g['held']['outcome']}.** {line}.", "",
             f"- general prompts: `{g['path']}`, {g['n_examples']} with a reference ({g['note']})",
             "- held = the 95% interval of the relative change of general perplexity lies at or below "
             f"+{g['tolerance']:.0%} and no degeneration figure (repeated 3-grams, repeated words, glued words, "
             "stops at end of turn) got worse with an interval excluding 0; forgot = the interval lies above "
             f"+{g['tolerance']:.0%} or a degeneration figure got worse; unclear = neither", "",
             metrics_table(report, g["metrics"])]
    return "\n".join(lines)


def _interval(d: dict | None, signed: bool = False) -> str:
    if not d or d.get("value") is None:
        return "n/a"
    f = "{:+.2f}" if signed else "{:.2f}"
    return f.format(d["value"]) + (" [" + ", ".join(f.format(x) for x in d["ci"]) + "]" if "ci" in d else "")


def _share(d: dict) -> str:
    return "n/a (none to count)" if d.get("value") is None else f"{d['value']:.0%} of {d['n']}"


def judge_markdown(report: dict) -> str:
    """The judge's section: correct share beside ROUGE-L, the tuned model's win rate, and how far the judge
    can be trusted (self-consistency under the position swap, first-position share, agreement with ROUGE-L).
    Without a judge, two lines on how to add one."""
    j = report.get("judge")
    if not j or "skipped" in j:
        return (f"No judge ran ({(j or {}).get('skipped', 'this section was not run')}).\n\n"
                "To add one, set JUDGE_BASE_URL and JUDGE_MODEL to an OpenAI-compatible endpoint (its key in the "
                "JUDGE_API_KEY secret), or JUDGE='local' for a transformers model, and run the judge cell again.")
    lines = [f"Judge: {j['judge']}; {j['n']} held-out prompts, {j['n_graded']} with both answers graded "
             "(correct / partly / wrong against the reference and the source chunk).", "",
             "| | base | tuned | tuned − base |", "|---|---|---|---|"]
    for label, key in (("correct share (judge) ↑", "correct"), ("ROUGE-L F1, same prompts ↑", "rougeL")):
        if key in j:
            lines.append(f"| {label} | {_interval(j[key]['base'])} | {_interval(j[key]['tuned'])} | "
                         f"{_interval(j[key]['diff'], signed=True)} |")
    o = j.get("outcomes", {})
    lines += ["", "- verdicts: " + "; ".join(f"{w}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
                                             for w, c in j["verdicts"].items()),
              f"- tuned vs base, asked in both orders (a win 1, a tie 0.5): win rate {_interval(j['win_rate'])} "
              f"over {j['win_rate']['n']} prompts (tuned wins {o.get('tuned wins', 0)}, ties {o.get('tie', 0)}, "
              f"base wins {o.get('base wins', 0)})",
              f"- self-consistency: the same verdict with the answers swapped in {_share(j['consistency'])} prompts; "
              f"first answer picked in {_share(j['first_position'])} decided verdicts (50% = no position bias)",
              f"- agreement with ROUGE-L: the answer the judge prefers has the higher ROUGE-L in "
              f"{_share(j['rouge_agreement'])} prompts where both differ",
              f"- unreadable verdicts (left out): {sum(j['unreadable'].values())}"
              + (f" ({', '.join(f'{k}: {v}' for k, v in j['unreadable'].items())})" if j["unreadable"] else "")
              + f"; failed requests (asked again on a rerun): {j['failed']}"
              + (f"; stopped: {j['stopped']}" if j.get("stopped") else ""),
              f"- this run asked {j['asked']} judgement(s), {j['tokens']:,} tokens, ${j['cost_usd']:.4f}; every "
              f"judgement is cached in `{j['file']}`"]
    return "\n".join(lines)


def _judged(share: dict | None) -> str:
    """A correct share of the judge's, with its interval and the prompts it rests on."""
    if not share or share.get("value") is None:
        return "—"
    return f"{_cell(share, 'perplexity')} (n={share['n']})"  # two decimals, as the judge's section


def retrieval_markdown(report: dict) -> str:
    """The retrieval baseline in Markdown: the verdict line, the four ways with intervals, the
    pairwise differences, retrieval's hit rate and how the passages were put in the prompt."""
    r = report.get("retrieval") or {}
    if not r:
        return "Retrieval baseline: not run."
    if "skipped" in r:
        return f"Retrieval baseline: {r['skipped'].rstrip('.')}."
    v, judged = r["verdict"], (report.get("judge") or {}).get("ways")
    lines = [f"**{v['line']}**", "", "| way | ROUGE-L F1 ↑ [95% CI] | − base, closed book |"
             + (" judged correct ↑ [95% CI] |" if judged else ""), "|---|---|---|" + ("---|" if judged else "")]
    for way, w in r["ways"].items():
        diff = v["diffs"].get(f"{way}-base")
        lines.append(f"| {w['label']} | {_cell(w['rougeL'], 'rougeL')} | "
                     f"{_cell(diff, 'rougeL', signed=True) if diff else '—'} |"
                     + (f" {_judged(judged.get(way))} |" if judged else ""))
    names = {"tuned-base": "tuned − base (closed book)", "base_rag-base": "retrieval − base (base model)",
             "tuned_rag-base": "tuned + passages − base (closed book)",
             "base_rag-tuned": "base + passages − tuned", "tuned_rag-tuned": "tuned + passages − tuned",
             "tuned_rag-base_rag": "tuned + passages − base + passages"}
    lines += ["", "| difference (ROUGE-L) | value [95% CI] |", "|---|---|"]
    lines += [f"| {names[k]} | {_cell(d, 'rougeL', signed=True)} |" for k, d in v["diffs"].items()]
    h = r["hit_rate"]
    hit = (f"Retrieval hit rate: {h['skipped']}" if "skipped" in h else
           f"Retrieval hit rate: the question's own source chunk is among the top {r['k']} for "
           f"{_cell(h, 'rougeL')} of {h['n']} questions ({h['hits']} hits)")
    lines += ["", hit + ".", "",
              f"- index: {r['index']}; the top {r['k']} passages go before each question, numbered, with the rule "
              f"\"Using the passages above where they help, answer:\"; {r['prompts_cut']} prompt(s) had a passage cut "
              "or left out to fit the context",
              "- the verdict is decided from the intervals: a way beats another only when the interval of their "
              "difference excludes 0"]
    return "\n".join(lines)


def report_markdown(report: dict, out_dir: Path | None = None) -> str:
    g, lp = report["generation"], report["long_prompts"]
    lines = [
        f"# Base vs tuned: {report['model_name']} + {report['adapter_dir']}", "",
        f"- held-out set: `{report['test_path']}`, {report['n_examples']} prompts with a reference "
        f"({report['reference_turn']} assistant reply of each conversation); "
        f"{len(report['rows_without_reference'])} rows without a reference skipped",
        f"- prompt format: {report['template']}"
        + (f", system prompt {report['system_prompt']!r}" if report['system_prompt'] else ""),
        f"- answers: {g['decoding']}, at most {g['max_new_tokens']} new tokens, batches of {g['batch_size']}; "
        f"{g['base_tokens_per_second']} (base) and {g['tuned_tokens_per_second']} (tuned) generated tokens/s "
        f"on {report['device']}",
        f"- long prompts (context {lp['context']} tokens, at most {lp['max_prompt_tokens']} for the prompt): "
        f"{lp['count']} — policy '{lp['policy']}': {lp['what']}",
        f"- ROUGE: {report['rouge_backend']}; perplexity: of the reference replies under each model, reply tokens only "
        f"({report['reference_tokens_scored']} tokens), as in training",
        f"- copy check: {report['copy_check']}",
        f"- intervals: {report['bootstrap']['interval']} bootstrap over prompts, {report['bootstrap']['resamples']} "
        f"resamples (seed {report['bootstrap']['seed']}); a difference whose interval contains 0 is not established "
        "by this test set", "",
        "## Metrics (value [95% CI])", "", metrics_table(report), "",
        f"Mean reference length: {report['reference_words']:.1f} words.", "", leakage_line(report), "",
        "## General ability: base vs tuned on general prompts (forgetting)", "", general_markdown(report), "",
        "## Retrieval baseline: four ways to answer", "", retrieval_markdown(report), "",
        "## Judge: is it right, and which is better?", "", judge_markdown(report), "",
        "## Answers side by side", "", side_by_side(report),
    ]
    if report.get("plots"):
        lines += ["## Plots", ""]
        for p in report["plots"]:
            rel = os.path.relpath(p, out_dir) if out_dir else p
            lines.append(f"![{Path(p).stem}]({rel})")
    return "\n".join(lines) + "\n"
