"""Recommenders that read item text with a pretrained BERT-family encoder.

:mod:`.encoder` loads the encoder (the offline all-MiniLM-L6-v2 by default) and embeds
text; :mod:`.base` is what every text model shares (the catalogue is the item table, so
cold items can be scored; users are the mean of their history); :mod:`.frozen` is the
zero-training baseline and :mod:`.two_tower` the fine-tuned two-tower model.
"""
