"""Morph: a terminal writing editor that shows what a language model's SAE features see in your prose."""

__version__ = "0.1.0"
