"""Small models, tokenizers and SAEs with random weights, built on the spot (nothing downloaded): the fixtures
of the tests and of `python -m benchmarks --tiny`."""

from __future__ import annotations

from pathlib import Path

import torch

TRAIN_TEXT = (
    "The river ran past the old mill, and the miller's daughter watched the water turn the wheel.\n"
    "In the evening the lamps were lit along the harbour; sailors sang and the gulls were quiet.\n"
    "Numbers like 1789, 1865 and 2020 appear in speeches about the nation, the people and the war.\n"
    "She said: \"I shall not go to London tomorrow, for the weather is cold and the roads are bad.\"\n"
    "Mr. Holmes lit his pipe. Watson opened the window; fog drifted in from Baker Street.\n"
    "Dear friends, we meet today in the spirit of freedom, liberty and justice for all citizens.\n"
) * 4


def build_tokenizer(folder: Path, vocab_size: int = 400):
    """A byte-level BPE fast tokenizer with <|endoftext|> as BOS/EOS, saved to `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([TRAIN_TEXT], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    return fast


def spread_weights(model, seed: int = 3):
    """Re-draw every parameter at a scale where activations are O(1) and the residual has a clear nonzero
    mean (Hugging Face's default init leaves GPT-2's residual at ~0.02, too small for tolerances to mean
    anything): norm gains 1 +- 0.3, matrices ~ 1/sqrt(fan_in), embeddings ~ N(0.5, 1), biases ~ N(0.1, 0.1)."""
    import torch.nn as nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            is_norm = "norm" in type(module).__name__.lower()
            for pname, param in module.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=gen).to(param.dtype)
                if is_norm:
                    param.copy_((1.0 if pname == "weight" else 0.0) + 0.3 * noise)
                elif isinstance(module, nn.Embedding):
                    param.copy_(noise + 0.5)
                elif param.ndim >= 2:
                    fan_in = param.shape[0] if type(module).__name__ == "Conv1D" else param.shape[-1]
                    param.copy_(noise / fan_in**0.5)
                else:
                    param.copy_(0.1 * noise + 0.1)
    return model


def build_model(folder: Path, arch: str = "gpt2", d_model: int = 64, n_layers: int = 3, seed: int = 0,
                spread: bool = False, **config_overrides):
    """A random causal LM of architecture `arch` (gpt2, llama, neox, gemma2, gemma3, qwen2, qwen3, olmo2) with a
    tokenizer. `spread=True` re-draws the weights with `spread_weights`; `config_overrides` go to the config."""
    import transformers as tf

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(folder)
    vocab = len(tokenizer)
    common = dict(vocab_size=vocab, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    common.update(config_overrides)
    llama_like = dict(hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, **common)
    if arch == "gpt2":
        config = tf.GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=512, **common)
        model = tf.GPT2LMHeadModel(config)
    elif arch == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**llama_like))
    elif arch == "neox":
        config = tf.GPTNeoXConfig(hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
                                  num_attention_heads=4, max_position_embeddings=512, **common)
        model = tf.GPTNeoXForCausalLM(config)
    elif arch == "gemma2":
        model = tf.Gemma2ForCausalLM(tf.Gemma2Config(head_dim=16, **llama_like))
    elif arch == "gemma3":
        model = tf.Gemma3ForCausalLM(tf.Gemma3TextConfig(head_dim=16, **llama_like))
    elif arch == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**llama_like))
    elif arch == "qwen3":
        model = tf.Qwen3ForCausalLM(tf.Qwen3Config(head_dim=16, **llama_like))
    elif arch == "olmo2":
        model = tf.Olmo2ForCausalLM(tf.Olmo2Config(**llama_like))
    else:
        raise ValueError(arch)
    if spread:
        spread_weights(model, seed=seed + 3)
    model.save_pretrained(folder, safe_serialization=True)
    return model, tokenizer


def build_gemma3_multimodal(d_model: int = 64, n_layers: int = 3, vocab_size: int = 400, seed: int = 0):
    """A random Gemma3ForConditionalGeneration (text decoder under model.language_model), in memory only."""
    import transformers as tf

    torch.manual_seed(seed)
    text = tf.Gemma3TextConfig(hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=vocab_size,
                               max_position_embeddings=512)
    vision = tf.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   image_size=28, patch_size=14)
    model = tf.Gemma3ForConditionalGeneration(tf.Gemma3Config(text_config=text, vision_config=vision,
                                                              mm_tokens_per_image=4))
    return spread_weights(model, seed=seed + 3).eval()


def build_sae(folder: Path, d_in: int, hook_name: str, arch: str = "topk", d_sae: int | None = None,
              seed: int = 1, prepend_bos: bool = True, cfg_kwargs: dict | None = None, **metadata):
    """A random SAE of architecture standard, topk or jumprelu, saved in SAE-Lens's on-disk format.

    `cfg_kwargs` go to the SAE config (e.g. normalize_activations); other keywords to its metadata (they
    override model_class_name="AutoModelForCausalLM")."""
    import sae_lens
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    d_sae = d_sae or 8 * d_in
    fields = dict(hook_name=hook_name, prepend_bos=prepend_bos, model_name="tiny",
                  model_class_name="AutoModelForCausalLM", context_size=128)
    fields.update(metadata)
    meta = SAEMetadata(**fields)
    extra = dict(cfg_kwargs or {})
    if arch == "standard":
        sae = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=meta, **extra))
    elif arch == "topk":
        sae = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=8, metadata=meta, **extra))
    elif arch == "jumprelu":
        sae = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, metadata=meta, **extra))
    else:
        raise ValueError(arch)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            if name == "threshold":
                param.fill_(0.05)
            elif name.startswith("b_"):
                param.normal_(0, 0.02)
            else:
                param.normal_(0, 1 / d_in**0.5)
    sae.save_model(folder)
    return sae
