"""Data: video decoding and sampling (``video``), ShapesWorld (``shapes``), dataset layouts
(``formats``) and cached features (``features``). Import from the submodules."""
