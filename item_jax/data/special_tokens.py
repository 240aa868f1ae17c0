"""The special token ids and pieces, the same for every tokenizer item_jax reads titles with.

Masking, packing and the model's heads use one set of ids whatever produced the pieces:
SentencePiece (`tokenizer.py`) is trained to carry them, and a BERT vocabulary is reordered
to put its own five special tokens at these ids (`wordpiece.py`). Ordinary word pieces
start at `FIRST_WORD_PIECE_ID`. Both tokenizers import this module, neither the other's.
"""

PAD_ID = 0
UNK_ID = 1
CLS_ID = 2  # SentencePiece BOS.
SEP_ID = 3  # SentencePiece EOS.
MASK_ID = 4  # User-defined symbol.
FIRST_WORD_PIECE_ID = 5

PAD_PIECE = "<pad>"
UNK_PIECE = "<unk>"
CLS_PIECE = "[CLS]"
SEP_PIECE = "[SEP]"
MASK_PIECE = "[MASK]"

SPECIAL_PIECES = {
    PAD_ID: PAD_PIECE,
    UNK_ID: UNK_PIECE,
    CLS_ID: CLS_PIECE,
    SEP_ID: SEP_PIECE,
    MASK_ID: MASK_PIECE,
}
