"""The offline synthetic world: rendered shapes with known attributes, captions, and a tiny CLIP."""
