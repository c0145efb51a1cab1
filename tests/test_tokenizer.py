"""Morph's reading of a generic fast tokenizer (morph.models.tokenizer.FastTokenizer) against transformers'
on the same folder: ids, offsets, texts, special tokens and chat templates."""

from __future__ import annotations

import pytest

from morph.models.presets import default_available
from morph.models.tiny import build_model
from morph.models.tokenizer import FastTokenizer

TEXTS = [
    "The storm broke over the harbour at midnight.",
    "  Leading spaces,\ttabs\nand new lines\n\n",
    "Naïve café — “quoted” ‘text’ … 東京 🙂 ẞ",
    "A literal <|im_start|> and <|endoftext|> in the text",
    "",
]
MESSAGES = [{"role": "system", "content": "You rewrite text."},
            {"role": "user", "content": "Rewrite: the kettle clicked off."}]


@pytest.fixture(scope="module", params=["tiny", "default"])
def pair(request, tmp_path_factory):
    from transformers import PreTrainedTokenizerFast

    if request.param == "default":
        if not default_available():
            pytest.skip("the default model is not installed")
        from morph.models import default_model

        folder = default_model.ensure()
    else:
        folder = tmp_path_factory.mktemp("tok")
        build_model(folder, "llama", d_model=32, n_layers=1)
    assert FastTokenizer.usable(folder)
    return FastTokenizer.from_folder(folder), PreTrainedTokenizerFast.from_pretrained(str(folder))


@pytest.mark.parametrize("text", TEXTS)
def test_ids_and_offsets_equal_transformers(pair, text):
    ours, theirs = pair
    for special in (False, True):
        a = ours(text, add_special_tokens=special, return_offsets_mapping=True)
        b = theirs(text, add_special_tokens=special, return_offsets_mapping=True)
        assert list(a["input_ids"]) == list(b["input_ids"])
        assert [tuple(o) for o in a["offset_mapping"]] == [tuple(o) for o in b["offset_mapping"]]


def test_texts_and_vocabulary_equal_transformers(pair):
    ours, theirs = pair
    ids = theirs(TEXTS[2] + TEXTS[3], add_special_tokens=False)["input_ids"]
    assert ours.decode(ids) == theirs.decode(ids)
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)
    assert ours.batch_decode([[i] for i in ids]) == theirs.batch_decode([[i] for i in ids])
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
    assert ours.convert_tokens_to_ids("<|endoftext|>") == theirs.convert_tokens_to_ids("<|endoftext|>")
    assert len(ours) == len(theirs) and ours.get_vocab() == theirs.get_vocab()
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == \
        (theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id)
    assert sorted(ours.all_special_ids) == sorted(theirs.all_special_ids)


def test_chat_template_renders_as_transformers_renders_it(pair):
    ours, theirs = pair
    if not theirs.chat_template:
        assert not ours.chat_template
        with pytest.raises(ValueError, match="no chat template"):
            ours.apply_chat_template(MESSAGES, tokenize=False)
        return
    for prompt in (False, True):
        assert ours.apply_chat_template(MESSAGES, add_generation_prompt=prompt, tokenize=False) == \
            theirs.apply_chat_template(MESSAGES, add_generation_prompt=prompt, tokenize=False)
    assert ours.apply_chat_template(MESSAGES, add_generation_prompt=True) == \
        list(theirs.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False))


def test_other_tokenizer_classes_are_left_to_transformers(tmp_path):
    import json

    build_model(tmp_path, "llama", d_model=32, n_layers=1)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "LlamaTokenizer"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert not FastTokenizer.usable(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    assert not FastTokenizer.usable(tmp_path)


# A template that uses what transformers' environment gives one: loop controls, a namespace, the tojson
# filter (not HTML-escaping), raise_exception, the special tokens' names, trimmed blocks.
RICH_TEMPLATE = """{%- set ns = namespace(n=0) -%}
{% for m in messages %}
  {% if m['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role ' + m['role']) }}{% endif %}
  {% if loop.index > 5 %}{% break %}{% endif %}
  {% set ns.n = ns.n + 1 %}
{{ bos_token }}{{ m['role'] }}: {{ m['content'] | tojson }}
{% endfor %}
{% if add_generation_prompt %}{{ ns.n }} assistant:{% endif %}"""


def test_a_rich_template_renders_and_fails_as_in_transformers(tmp_path):
    import jinja2
    from transformers import PreTrainedTokenizerFast

    build_model(tmp_path, "llama", d_model=32, n_layers=1)
    ours, theirs = FastTokenizer.from_folder(tmp_path), PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    messages = MESSAGES + [{"role": "user", "content": "Quotes \" & <tags> & café"}]
    for tok in (ours, theirs):
        tok.chat_template = RICH_TEMPLATE
    for prompt in (False, True):
        assert ours.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=False) == \
            theirs.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=False)
    with pytest.raises(jinja2.exceptions.TemplateError, match="bad role tool"):
        ours.apply_chat_template(messages + [{"role": "tool", "content": "x"}], tokenize=False)
    ours.chat_template = "{{ messages.__class__.__mro__ }}"  # the sandbox refuses what a template must not reach
    with pytest.raises(jinja2.exceptions.SecurityError):
        ours.apply_chat_template(messages, tokenize=False)
