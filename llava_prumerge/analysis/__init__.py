"""Tooling around the method, not the method: ``benchmark`` (speed and memory), ``roofline``
(Table 2), ``visualize`` (Fig. 1b/3a pictures), ``reference`` (the released per-token loop, the
benchmark's comparison point)."""
