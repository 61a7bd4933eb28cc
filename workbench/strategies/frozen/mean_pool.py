"""Mean pooling of frozen frame features: CLIP4Clip's meanP without training (zero-shot).

Luo et al., *CLIP4Clip: An Empirical Study of CLIP for End to End Video Clip Retrieval*
(Neurocomputing 2022). The baseline every other strategy is measured against: it trains nothing
and cannot see frame order, so on time-reversed twins it is exactly at chance.
"""
from ..base import VideoTextModel, register_strategy


@register_strategy("mean-pool")
class MeanPool(VideoTextModel):
    family = "frozen"
    leaf = "baseline (zero-shot)"
    reference = "CLIP4Clip meanP (Luo et al., 2022), no training"
    temporal = False
    input_level = "features"
    order = 0
