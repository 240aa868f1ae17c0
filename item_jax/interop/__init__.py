"""Interchange with other frameworks' checkpoints: BERT and ViT import, BERT export."""
