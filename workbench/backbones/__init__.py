"""ILFM backbones: open_clip models seen frame by frame, and taps into their image tower."""
from workbench.backbones.openclip import (
    Backbone,
    BackboneError,
    describe_config,
    list_backbones,
    load_backbone,
    resolve_model_name,
    save_backbone,
)
from workbench.backbones.taps import (
    AttentionWeights,
    LayerTokens,
    PatchTokens,
    QueriesKeys,
    TapError,
    attention_weights,
    layer_tokens,
    patch_tokens,
    queries_keys,
    vision_tower,
)

__all__ = [
    "AttentionWeights", "Backbone", "BackboneError", "LayerTokens", "PatchTokens", "QueriesKeys", "TapError",
    "attention_weights", "describe_config", "layer_tokens", "list_backbones", "load_backbone", "patch_tokens",
    "queries_keys", "resolve_model_name", "save_backbone", "vision_tower",
]
