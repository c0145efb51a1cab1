"""Small models, tokenizers and SAEs built by the tests themselves: random weights, nothing downloaded."""

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


def build_model(folder: Path, arch: str = "gpt2", d_model: int = 64, n_layers: int = 3, seed: int = 0):
    """A random causal LM of architecture `arch` (gpt2, llama, neox, gemma2, qwen2, qwen3) with a tokenizer."""
    import transformers as tf

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(folder)
    vocab = len(tokenizer)
    common = dict(vocab_size=vocab, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
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
    elif arch == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**llama_like))
    elif arch == "qwen3":
        model = tf.Qwen3ForCausalLM(tf.Qwen3Config(head_dim=16, **llama_like))
    else:
        raise ValueError(arch)
    model.save_pretrained(folder, safe_serialization=True)
    return model, tokenizer


def build_sae(folder: Path, d_in: int, hook_name: str, arch: str = "topk", d_sae: int | None = None,
              seed: int = 1, prepend_bos: bool = True, **metadata):
    """A random SAE of architecture standard, topk or jumprelu, saved in SAE-Lens's on-disk format."""
    import sae_lens
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    d_sae = d_sae or 8 * d_in
    meta = SAEMetadata(hook_name=hook_name, prepend_bos=prepend_bos, model_name="tiny",
                       model_class_name="AutoModelForCausalLM", context_size=128, **metadata)
    if arch == "standard":
        sae = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=meta))
    elif arch == "topk":
        sae = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=8, metadata=meta))
    elif arch == "jumprelu":
        sae = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae, metadata=meta))
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
