"""Loading: model + tokenizer + SAE + hook point = a Lens. Heavy imports stay inside functions."""
