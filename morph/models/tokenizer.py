"""A model folder's fast tokenizer read with the `tokenizers` library alone.

Why: transformers' tokenizer classes import transformers itself (~1 s on a laptop CPU, before any model);
a folder whose tokenizer_config.json names transformers' generic fast tokenizer (`TokenizersBackend`,
`PreTrainedTokenizerFast`: the default model's does) holds everything in tokenizer.json, and that class
adds nothing on top of `tokenizers.Tokenizer` but the special tokens' names and the chat template.
`FastTokenizer` is that, with the part of transformers' tokenizer interface Morph uses: calling it
(`input_ids`, `offset_mapping`), `decode`, `batch_decode`, the ids of the special tokens,
`convert_ids_to_tokens` / `convert_tokens_to_ids`, `get_vocab`, `len()`, `backend_tokenizer`, and
`apply_chat_template` (rendered in jinja2's immutable sandbox with the environment transformers gives a
chat template: trimmed blocks, loop controls, `raise_exception`, a non-escaping `tojson`, `strftime_now`;
importing transformers' renderer costs ~1 s on a laptop CPU, at the first rewrite). Its ids, offsets,
texts and rendered chats equal transformers' (tests/test_tokenizer.py). Other folders load with
transformers (morph.models.lens.load_tokenizer).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from tokenizers import Tokenizer

if TYPE_CHECKING:
    import jinja2

GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _content(value: object) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or {"content": ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Encoded(dict):
    """What calling a tokenizer returns: a dict whose keys are also attributes (as transformers'
    BatchEncoding)."""

    def __getattr__(self, name: str) -> object:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> "jinja2.Template":
    """A chat template compiled as transformers compiles one (`_compile_jinja_template`): an immutable
    sandbox (a template from a model folder is untrusted code), trim_blocks and lstrip_blocks, loop
    controls, and the globals and filter templates expect."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: object, ensure_ascii: bool = False, indent: int | None = None,
               separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format: str) -> str:
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


class FastTokenizer:
    """See the module's docstring. Build it with `FastTokenizer.from_folder`."""

    is_fast = True

    def __init__(self, backend: Tokenizer, special: dict[str, str], chat_template: str | None,
                 model_max_length: int = 1 << 60) -> None:
        self.backend_tokenizer = backend
        self.special_tokens_map = special
        self.chat_template = chat_template
        self.model_max_length = model_max_length

    @classmethod
    def usable(cls, folder: Path) -> bool:
        """Whether `folder` holds a tokenizer.json whose config names transformers' generic fast tokenizer."""
        config = _read_json(folder / "tokenizer_config.json")
        return (folder / "tokenizer.json").is_file() and config.get("tokenizer_class") in GENERIC_CLASSES

    @classmethod
    def from_folder(cls, folder: Path) -> "FastTokenizer":
        """Raises OSError or ValueError (from `tokenizers`: an unreadable tokenizer.json)."""
        backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = _read_json(folder / "tokenizer_config.json")
        special = {name: text for name in _SPECIAL_NAMES if (text := _content(config.get(name))) is not None}
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if isinstance(t, dict)
                             and t.get("name") == "default"), None)
        jinja = folder / "chat_template.jinja"
        if jinja.is_file():
            template = jinja.read_text(encoding="utf-8")
        limit = config.get("model_max_length")
        return cls(backend, special, template if isinstance(template, str) else None,
                   int(limit) if isinstance(limit, (int, float)) else 1 << 60)

    def _token_id(self, name: str) -> int | None:
        text = self.special_tokens_map.get(name)
        return None if text is None else self.backend_tokenizer.token_to_id(text)

    @property
    def bos_token_id(self) -> int | None:
        return self._token_id("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._token_id("eos_token")

    @property
    def pad_token_id(self) -> int | None:
        return self._token_id("pad_token")

    @property
    def all_special_ids(self) -> list[int]:
        ids = [self._token_id(name) for name in self.special_tokens_map]
        return list(dict.fromkeys(i for i in ids if i is not None))

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)

    def __call__(self, text: str | list[str], add_special_tokens: bool = True,
                 return_offsets_mapping: bool = False, return_tensors: str | None = None) -> Encoded:
        """`input_ids` and `attention_mask` (and `offset_mapping`) of a text, or lists of them for a list of
        texts; `return_tensors="pt"`: torch tensors (equal-length texts only, as transformers without padding)."""
        if isinstance(text, str):
            encodings = [self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens)]
        else:
            encodings = self.backend_tokenizer.encode_batch(list(text), add_special_tokens=add_special_tokens)
        out = Encoded(input_ids=[e.ids for e in encodings], attention_mask=[e.attention_mask for e in encodings])
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        if return_tensors == "pt":
            import torch

            return Encoded({k: torch.tensor(v) for k, v in out.items()})
        if return_tensors is not None:
            raise ValueError(f"return_tensors={return_tensors!r}: only 'pt' is supported")
        return out if not isinstance(text, str) else Encoded({k: v[0] for k, v in out.items()})

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.backend_tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def batch_decode(self, rows: Iterable[Iterable[int]], skip_special_tokens: bool = False) -> list[str]:
        return self.backend_tokenizer.decode_batch([[int(i) for i in row] for row in rows],
                                                   skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | None | list[str | None]:
        if isinstance(ids, int):
            return self.backend_tokenizer.id_to_token(ids)
        return [self.backend_tokenizer.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | None | list[int | None]:
        if isinstance(tokens, str):
            return self.backend_tokenizer.token_to_id(tokens)
        return [self.backend_tokenizer.token_to_id(t) for t in tokens]

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = False,
                            tokenize: bool = True) -> str | list[int]:
        """The chat rendered as transformers renders it (the template compiled by `_compiled`, with the
        special tokens' names as variables); token ids when `tokenize`."""
        if not self.chat_template:
            raise ValueError("this tokenizer has no chat template")
        rendered = _compiled(self.chat_template).render(
            messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
            **self.special_tokens_map)
        return self(rendered, add_special_tokens=False)["input_ids"] if tokenize else rendered
