"""Tasks from fine to coarse (DESIGN §5). Each takes any VideoTextModel."""
