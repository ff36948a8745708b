"""A CLIP-style BPE tokenizer built from a closed vocabulary.

Whole vocabulary words become single tokens; any other word still splits into byte-level
pieces, exactly as the real CLIP tokenizer does, so placeholder tokens and unknown object
names behave as they do on Stable Diffusion. The files are the ones `CLIPTokenizer` reads:
`vocab.json`, `merges.txt`, `tokenizer_config.json`, `special_tokens_map.json`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

START = "<|startoftext|>"
END = "<|endoftext|>"
WORD_END = "</w>"


def _bytes_to_unicode() -> list[str]:
    # CLIP's reversible byte -> printable-character table; order matters for the vocab ids.
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def learn_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """Greedy BPE on the distinct words until every word is one symbol.

    Ties break on the pair itself, so the result is deterministic.
    """
    pieces = {w: [*w[:-1], w[-1] + WORD_END] for w in sorted({w.lower() for w in words}) if w}
    merges: list[tuple[str, str]] = []
    while True:
        counts: Counter[tuple[str, str]] = Counter()
        for symbols in pieces.values():
            counts.update(pairwise(symbols))
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        for word, symbols in pieces.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            pieces[word] = out


def _extra_merges(merges: list[tuple[str, str]], words: list[str]) -> list[tuple[str, str]]:
    """Merges, after `merges`, that make each of `words` one symbol (greedy, deterministic)."""
    ranks = {m: i for i, m in enumerate(merges)}
    known = set(merges)
    out: list[tuple[str, str]] = []
    for word in sorted({w.lower() for w in words}):
        symbols = [*word[:-1], word[-1] + WORD_END]
        while len(symbols) > 1:  # first what the existing merges do, in rank order
            pairs = [(ranks.get(p, 1 << 30), i, p) for i, p in enumerate(pairwise(symbols))]
            rank, i, pair = min(pairs)
            if rank == 1 << 30:
                break
            symbols[i : i + 2] = [pair[0] + pair[1]]
        while len(symbols) > 1:  # then new merges, left to right, until one symbol
            pair = (symbols[0], symbols[1])
            if pair not in known:
                known.add(pair)
                ranks[pair] = len(ranks)
                out.append(pair)
            symbols[0:2] = [pair[0] + pair[1]]
    return out


def write_tokenizer(
    folder: Path, words: Iterable[str], model_max_length: int, extra_words: Iterable[str] = ()
) -> None:
    """Write a CLIP tokenizer whose vocabulary makes each of `words` a single token.

    `extra_words` become single tokens too, with ids after every id of the tokenizer of
    `words` alone and merges ranked after its merges: a model trained on that tokenizer
    keeps every token id and every tokenization, and only grows its embedding table.
    """
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab_list = chars + [c + WORD_END for c in chars]
    merges = learn_merges(words)
    vocab_list += [a + b for a, b in merges]
    vocab_list += [START, END]
    extra = [w for w in extra_words if w.lower() not in {x.lower() for x in words}]
    if extra:
        more = _extra_merges(merges, extra)
        merges += more
        vocab_list += [a + b for a, b in more]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    special = {
        "bos_token": START,
        "eos_token": END,
        "unk_token": END,
        "pad_token": END,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        **special,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
