"""LML-IQA training: the local-manifold loss, teacher saliency, the engine (AMP, DDP, resumable)."""
