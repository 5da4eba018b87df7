"""Next-item transformers over each user's item sequence: SASRec (causal) and BERT4Rec
(bidirectional, Cloze), both on ``transformers.BertModel``, sharing one base
(:mod:`.base`: options, encoder, fitting, scoring, checkpoints)."""
