"""Word pairs for embedding-analogy tasks (function-vector parallelograms).

Each task is a relation between an input word and an output word, e.g.
``("king", "kings")`` for "singular-plural". Two pairs of the same task
``(a, b)`` and ``(c, d)`` form an analogy ``a : b :: c : d``; in a model whose
token embeddings encode the relation as a direction, ``E_a + E_d - E_b - E_c``
is small (see :mod:`harmono.analysis.parallelogram`).

The lists are written for this library and follow the four of the twelve
tasks of Todd et al. used by the harmonic-loss paper (§5) that are easiest to
state for common words. The words are chosen to be frequent both in early
modern English (Shakespeare's complete works) and in modern web text
(OpenWebText), so that they are likely to be single tokens of a small
byte-level BPE as well as of GPT-2's tokenizer. Proper nouns are capitalised,
every other word is lower case, and no word holds a space.

:func:`pair_token_ids` turns a list of pairs into a ``(P, 2)`` tensor of token
ids for a given tokenizer.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable

import torch

__all__ = ["ANALOGY_TASKS", "PAIR_RULES", "pair_token_ids"]

_COUNTRY_CAPITAL: tuple[tuple[str, str], ...] = (
    ("France", "Paris"),
    ("England", "London"),
    ("Scotland", "Edinburgh"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Denmark", "Copenhagen"),
    ("Egypt", "Cairo"),
    ("Greece", "Athens"),
    ("Germany", "Berlin"),
    ("Russia", "Moscow"),
    ("Ireland", "Dublin"),
    ("Wales", "Cardiff"),
    ("Portugal", "Lisbon"),
    ("Austria", "Vienna"),
    ("Hungary", "Budapest"),
    ("Poland", "Warsaw"),
    ("Sweden", "Stockholm"),
    ("Norway", "Oslo"),
    ("Finland", "Helsinki"),
    ("Netherlands", "Amsterdam"),
    ("Belgium", "Brussels"),
    ("Switzerland", "Bern"),
    ("Iceland", "Reykjavik"),
    ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"),
    ("Serbia", "Belgrade"),
    ("Croatia", "Zagreb"),
    ("Ukraine", "Kiev"),
    ("Latvia", "Riga"),
    ("Lithuania", "Vilnius"),
    ("Estonia", "Tallinn"),
    ("Armenia", "Yerevan"),
    ("Cyprus", "Nicosia"),
    ("Turkey", "Ankara"),
    ("Iran", "Tehran"),
    ("Iraq", "Baghdad"),
    ("Syria", "Damascus"),
    ("Lebanon", "Beirut"),
    ("Israel", "Jerusalem"),
    ("Jordan", "Amman"),
    ("Qatar", "Doha"),
    ("Oman", "Muscat"),
    ("Afghanistan", "Kabul"),
    ("Pakistan", "Islamabad"),
    ("India", "Delhi"),
    ("Nepal", "Kathmandu"),
    ("Bangladesh", "Dhaka"),
    ("China", "Beijing"),
    ("Japan", "Tokyo"),
    ("Korea", "Seoul"),
    ("Taiwan", "Taipei"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("Indonesia", "Jakarta"),
    ("Philippines", "Manila"),
    ("Australia", "Canberra"),
    ("Canada", "Ottawa"),
    ("Cuba", "Havana"),
    ("Jamaica", "Kingston"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Colombia", "Bogota"),
    ("Venezuela", "Caracas"),
    ("Morocco", "Rabat"),
    ("Algeria", "Algiers"),
    ("Tunisia", "Tunis"),
    ("Libya", "Tripoli"),
    ("Sudan", "Khartoum"),
    ("Kenya", "Nairobi"),
    ("Uganda", "Kampala"),
    ("Nigeria", "Abuja"),
    ("Ghana", "Accra"),
    ("Senegal", "Dakar"),
    ("Zimbabwe", "Harare"),
)

_SINGULAR_PLURAL: tuple[tuple[str, str], ...] = (
    ("king", "kings"),
    ("lord", "lords"),
    ("queen", "queens"),
    ("prince", "princes"),
    ("lady", "ladies"),
    ("knight", "knights"),
    ("man", "men"),
    ("woman", "women"),
    ("child", "children"),
    ("friend", "friends"),
    ("enemy", "enemies"),
    ("soldier", "soldiers"),
    ("servant", "servants"),
    ("master", "masters"),
    ("father", "fathers"),
    ("mother", "mothers"),
    ("brother", "brothers"),
    ("sister", "sisters"),
    ("son", "sons"),
    ("daughter", "daughters"),
    ("wife", "wives"),
    ("boy", "boys"),
    ("girl", "girls"),
    ("god", "gods"),
    ("eye", "eyes"),
    ("ear", "ears"),
    ("hand", "hands"),
    ("arm", "arms"),
    ("head", "heads"),
    ("heart", "hearts"),
    ("face", "faces"),
    ("lip", "lips"),
    ("tongue", "tongues"),
    ("foot", "feet"),
    ("tooth", "teeth"),
    ("tear", "tears"),
    ("body", "bodies"),
    ("life", "lives"),
    ("word", "words"),
    ("name", "names"),
    ("letter", "letters"),
    ("book", "books"),
    ("thought", "thoughts"),
    ("dream", "dreams"),
    ("hope", "hopes"),
    ("fear", "fears"),
    ("gift", "gifts"),
    ("day", "days"),
    ("night", "nights"),
    ("hour", "hours"),
    ("year", "years"),
    ("thing", "things"),
    ("place", "places"),
    ("house", "houses"),
    ("door", "doors"),
    ("gate", "gates"),
    ("wall", "walls"),
    ("city", "cities"),
    ("country", "countries"),
    ("field", "fields"),
    ("river", "rivers"),
    ("tree", "trees"),
    ("flower", "flowers"),
    ("star", "stars"),
    ("cloud", "clouds"),
    ("heaven", "heavens"),
    ("horse", "horses"),
    ("dog", "dogs"),
    ("bird", "birds"),
    ("mouse", "mice"),
    ("ship", "ships"),
    ("sword", "swords"),
    ("knife", "knives"),
    ("crown", "crowns"),
    ("war", "wars"),
)

_PRESENT_PAST: tuple[tuple[str, str], ...] = (
    ("love", "loved"),
    ("live", "lived"),
    ("die", "died"),
    ("kill", "killed"),
    ("call", "called"),
    ("ask", "asked"),
    ("look", "looked"),
    ("play", "played"),
    ("walk", "walked"),
    ("turn", "turned"),
    ("pray", "prayed"),
    ("stay", "stayed"),
    ("seem", "seemed"),
    ("serve", "served"),
    ("return", "returned"),
    ("show", "showed"),
    ("speak", "spoke"),
    ("see", "saw"),
    ("go", "went"),
    ("come", "came"),
    ("take", "took"),
    ("give", "gave"),
    ("know", "knew"),
    ("make", "made"),
    ("say", "said"),
    ("think", "thought"),
    ("tell", "told"),
    ("find", "found"),
    ("hear", "heard"),
    ("leave", "left"),
    ("bring", "brought"),
    ("stand", "stood"),
    ("sit", "sat"),
    ("fall", "fell"),
    ("lose", "lost"),
    ("win", "won"),
    ("fight", "fought"),
    ("hold", "held"),
    ("keep", "kept"),
    ("sleep", "slept"),
    ("weep", "wept"),
    ("feel", "felt"),
    ("meet", "met"),
    ("lead", "led"),
    ("feed", "fed"),
    ("send", "sent"),
    ("spend", "spent"),
    ("build", "built"),
    ("buy", "bought"),
    ("sell", "sold"),
    ("teach", "taught"),
    ("catch", "caught"),
    ("seek", "sought"),
    ("run", "ran"),
    ("eat", "ate"),
    ("drink", "drank"),
    ("sing", "sang"),
    ("begin", "began"),
    ("write", "wrote"),
    ("ride", "rode"),
    ("rise", "rose"),
    ("break", "broke"),
    ("choose", "chose"),
    ("forget", "forgot"),
    ("get", "got"),
    ("become", "became"),
    ("strike", "struck"),
    ("hide", "hid"),
    ("fly", "flew"),
    ("grow", "grew"),
    ("throw", "threw"),
    ("draw", "drew"),
    ("wear", "wore"),
    ("swear", "swore"),
    ("bear", "bore"),
    ("shake", "shook"),
)

_ANTONYM: tuple[tuple[str, str], ...] = (
    ("good", "bad"),
    ("day", "night"),
    ("love", "hate"),
    ("life", "death"),
    ("light", "dark"),
    ("hot", "cold"),
    ("young", "old"),
    ("rich", "poor"),
    ("high", "low"),
    ("true", "false"),
    ("first", "last"),
    ("big", "small"),
    ("long", "short"),
    ("up", "down"),
    ("in", "out"),
    ("black", "white"),
    ("friend", "enemy"),
    ("war", "peace"),
    ("heaven", "hell"),
    ("fast", "slow"),
    ("strong", "weak"),
    ("wise", "foolish"),
    ("happy", "sad"),
    ("give", "take"),
    ("come", "go"),
    ("early", "late"),
    ("right", "wrong"),
    ("begin", "end"),
    ("buy", "sell"),
    ("win", "lose"),
    ("sweet", "bitter"),
    ("north", "south"),
    ("east", "west"),
    ("more", "less"),
    ("many", "few"),
    ("always", "never"),
    ("full", "empty"),
    ("wet", "dry"),
    ("hard", "soft"),
    ("near", "far"),
    ("before", "after"),
    ("above", "below"),
    ("alive", "dead"),
    ("asleep", "awake"),
    ("open", "shut"),
    ("push", "pull"),
    ("thick", "thin"),
    ("wide", "narrow"),
    ("deep", "shallow"),
    ("clean", "dirty"),
    ("easy", "difficult"),
    ("fair", "foul"),
    ("proud", "humble"),
    ("kind", "cruel"),
    ("remember", "forget"),
    ("rise", "fall"),
    ("question", "answer"),
    ("summer", "winter"),
    ("morning", "evening"),
    ("top", "bottom"),
    ("front", "back"),
    ("laugh", "weep"),
    ("accept", "refuse"),
    ("safe", "dangerous"),
    ("loud", "quiet"),
    ("sick", "healthy"),
    ("lost", "found"),
    ("noble", "base"),
    ("master", "servant"),
    ("sharp", "dull"),
)

ANALOGY_TASKS: dict[str, tuple[tuple[str, str], ...]] = {
    "country-capital": _COUNTRY_CAPITAL,
    "singular-plural": _SINGULAR_PLURAL,
    "present-past": _PRESENT_PAST,
    "antonym": _ANTONYM,
}
"""Task name -> ``(input word, output word)`` pairs; 50 to 80 pairs per task."""

PAIR_RULES: tuple[str, ...] = ("whole", "last")
"""How :func:`pair_token_ids` maps a word to one token: ``"whole"`` or ``"last"``."""


def _word_ids(encode: Callable[[str], list[int]], word: object, index: int) -> list[int]:
    """Token ids of ``word`` as it appears mid-sentence (after a space)."""
    if not isinstance(word, str):
        raise ValueError(f"pair {index}: expected words as str, got {type(word).__name__} ({word!r})")
    if not word or word.strip() != word or " " in word:
        raise ValueError(f"pair {index}: expected a non-empty word without spaces, got {word!r}")
    ids = encode(" " + word)
    try:
        ids = [operator.index(i) for i in ids]
    except TypeError as err:
        raise ValueError(f"encode({' ' + word!r}): expected a list of int token ids, got {ids!r}") from err
    if not ids:
        raise ValueError(f"encode({' ' + word!r}): expected at least one token id, got none")
    return ids


def pair_token_ids(
    encode: Callable[[str], list[int]],
    pairs: Iterable[tuple[str, str]],
    rule: str = "whole",
) -> tuple[torch.Tensor, tuple[tuple[str, str], ...]]:
    """Token ids of the words of ``pairs``, keeping the pairs a tokenizer can represent.

    Each word is encoded as it appears mid-sentence, ``encode(" " + word)``,
    which for byte-level BPE tokenizers (GPT-2) is the form the model sees
    most often.

    Parameters
    ----------
    encode : callable str -> list of int
        The tokenizer, e.g. ``lambda s: tokenizer.encode(s).ids``.
    pairs : iterable of (str, str)
        ``(input word, output word)`` pairs, e.g. ``ANALOGY_TASKS["antonym"]``.
    rule : {"whole", "last"}
        ``"whole"``: keep a pair only when both words encode to exactly one
        token. ``"last"`` (the harmonic-loss paper's rule): represent each
        word by its last token and keep every pair. Under both rules a pair
        whose two tokens coincide is dropped (it carries no relation).

    Returns
    -------
    ids : LongTensor, shape (P, 2)
        ``ids[p] = (input token, output token)`` of the ``p``-th kept pair;
        shape ``(0, 2)`` when none is kept.
    kept : tuple of (str, str), length P
        The kept pairs, in their original order.

    Raises
    ------
    ValueError
        On an unknown ``rule``, a pair that is not two words, an empty word
        or one holding a space, or an ``encode`` that returns no token.
    """
    if rule not in PAIR_RULES:
        raise ValueError(f"rule: expected one of {PAIR_RULES}, got {rule!r}")
    rows: list[tuple[int, int]] = []
    kept: list[tuple[str, str]] = []
    for index, pair in enumerate(pairs):
        if isinstance(pair, str) or len(pair) != 2:
            raise ValueError(f"pair {index}: expected (input word, output word), got {pair!r}")
        word_in, word_out = pair
        ids_in = _word_ids(encode, word_in, index)
        ids_out = _word_ids(encode, word_out, index)
        if rule == "whole" and (len(ids_in) != 1 or len(ids_out) != 1):
            continue
        if ids_in[-1] == ids_out[-1]:
            continue
        rows.append((ids_in[-1], ids_out[-1]))
        kept.append((word_in, word_out))
    ids = torch.tensor(rows, dtype=torch.int64).reshape(len(rows), 2)
    return ids, tuple(kept)
