"""The Textual UI. Only this package imports Textual; it reaches the engine through morph.features."""
