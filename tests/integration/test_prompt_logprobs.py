"""Prompt logprobs: SGLang's /generate `logprob_start_len` and OpenAI's echo + logprobs."""
import math

from conftest import MODEL

PROMPT = "The capital of France is Paris. The capital of Germany is"


def _generate(server, **body):
    r = server.post("/generate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _ids(server, text):
    return _generate(server, text=text, sampling_params={"max_new_tokens": 0}, return_logprob=True,
                     logprob_start_len=0)["meta_info"]["input_token_logprobs"]


def test_default_start_reports_only_the_last_prompt_token(server):
    out = _generate(server, text=PROMPT, sampling_params={"max_new_tokens": 3, "temperature": 0},
                    return_logprob=True, return_text_in_logprobs=True)
    meta = out["meta_info"]
    assert len(meta["input_token_logprobs"]) == 1
    lp, tid, text = meta["input_token_logprobs"][0]
    assert lp is None and isinstance(tid, int) and isinstance(text, str)
    assert len(meta["output_token_logprobs"]) == 3


def test_shapes_nulls_and_top_logprobs(server):
    out = _generate(server, text=PROMPT, sampling_params={"max_new_tokens": 2, "temperature": 0},
                    return_logprob=True, logprob_start_len=0, top_logprobs_num=3)
    meta = out["meta_info"]
    inp, top = meta["input_token_logprobs"], meta["input_top_logprobs"]
    n = meta["prompt_tokens"]
    assert len(inp) == n and len(top) == n
    assert inp[0][0] is None and top[0] is None
    for (lp, tid, _), alts in zip(inp[1:], top[1:]):
        assert lp <= 0 and math.isfinite(lp)
        assert len(alts) == 3
        # The best alternative is at least as likely as the actual token.
        assert alts[0][0] >= lp - 1e-5
        assert alts[0][0] >= alts[1][0] >= alts[2][0]
    # A later start reports a suffix: the same tokens and values, with a null first.
    later = _generate(server, text=PROMPT, sampling_params={"max_new_tokens": 1, "temperature": 0},
                      return_logprob=True, logprob_start_len=5)["meta_info"]["input_token_logprobs"]
    assert len(later) == n - 5
    assert later[0][0] is None and later[0][1] == inp[5][1]
    for a, b in zip(later[1:], inp[6:]):
        assert a[1] == b[1] and abs(a[0] - b[0]) < 2e-3


def test_teacher_forcing_matches_greedy_output_logprobs(server):
    gen = _generate(server, text=PROMPT, sampling_params={"max_new_tokens": 8, "temperature": 0, "ignore_eos": True},
                    return_logprob=True)
    out_ids = gen["output_ids"]
    out_lps = [e[0] for e in gen["meta_info"]["output_token_logprobs"]]
    prompt_len = gen["meta_info"]["prompt_tokens"]
    ids = [e[1] for e in _ids(server, PROMPT)]
    assert len(ids) == prompt_len
    # Score prompt + continuation; the continuation is in the radix cache and must be recomputed.
    forced = _generate(server, input_ids=ids + out_ids, sampling_params={"max_new_tokens": 1, "temperature": 0},
                       return_logprob=True, logprob_start_len=prompt_len - 1)["meta_info"]
    scored = forced["input_token_logprobs"][1:]
    assert [e[1] for e in scored] == out_ids
    for (lp, _, _), want in zip(scored, out_lps):
        assert abs(lp - want) < 2e-3, (lp, want)
    assert forced["cached_tokens"] <= prompt_len - 1


def test_bad_logprob_start_len_is_400(server):
    r = server.post("/generate", json={"text": "hi", "return_logprob": True, "logprob_start_len": 999})
    assert r.status_code == 400
    assert "logprob_start_len" in r.json()["error"]["message"]


def test_completions_echo_with_logprobs(server):
    client = server.openai()
    c = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0, echo=True, logprobs=2)
    ch = c.choices[0]
    lp = ch.logprobs
    n_prompt = c.usage.prompt_tokens
    assert ch.text.startswith(PROMPT)
    assert len(lp.tokens) == n_prompt + c.usage.completion_tokens
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v is not None and v <= 0 for v in lp.token_logprobs[1:])
    assert all(len(t) >= 1 for t in lp.top_logprobs[1:])
    assert lp.text_offset == sorted(lp.text_offset)
    # The same prompt logprobs as /generate reports.
    ref = _ids(server, PROMPT)
    for a, b in zip(lp.token_logprobs[1:n_prompt], ref[1:]):
        assert abs(a - b[0]) < 2e-3


def test_completions_echo_scores_prompt_with_zero_max_tokens(server):
    client = server.openai()
    c = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, echo=True, logprobs=0)
    lp = c.choices[0].logprobs
    assert c.choices[0].text == PROMPT
    assert len(lp.token_logprobs) == c.usage.prompt_tokens
    assert c.usage.completion_tokens == 0
    assert lp.token_logprobs[0] is None


def test_streamed_echo_with_logprobs(server):
    client = server.openai()
    chunks = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0, echo=True,
                                            logprobs=1, stream=True))
    first = chunks[0].choices[0]
    assert first.text == PROMPT
    assert first.logprobs.token_logprobs[0] is None
    assert len(first.logprobs.tokens) > 5
    tokens = sum(len(c.choices[0].logprobs.tokens) for c in chunks if c.choices and c.choices[0].logprobs)
    assert tokens == len(first.logprobs.tokens) + 3
