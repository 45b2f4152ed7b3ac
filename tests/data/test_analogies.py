import numpy as np
import pytest
import torch

from harmono.data.analogies import ANALOGY_TASKS, pair_token_ids

# ---------------------------------------------------------------- the lists


def test_tasks_in_order():
    assert list(ANALOGY_TASKS) == ["country-capital", "singular-plural", "present-past", "antonym"]


@pytest.mark.parametrize("task", list(ANALOGY_TASKS))
def test_pairs_well_formed(task):
    pairs = ANALOGY_TASKS[task]
    assert isinstance(pairs, tuple)
    assert 50 <= len(pairs) <= 80
    assert len(set(pairs)) == len(pairs), "duplicate pair"
    for pair in pairs:
        assert isinstance(pair, tuple) and len(pair) == 2
        first, second = pair
        assert first != second
        for word in pair:
            assert isinstance(word, str) and word
            assert word == word.strip() and not any(ch.isspace() for ch in word)
            assert word.isalpha(), word
            if task == "country-capital":
                assert word[0].isupper() and word[1:].islower(), word
            else:
                assert word.islower(), word


def test_no_input_maps_to_two_outputs():
    for task, pairs in ANALOGY_TASKS.items():
        inputs = [first for first, _ in pairs]
        assert len(set(inputs)) == len(inputs), task


# ---------------------------------------------------------------- token ids, fake encoder

VOCAB = {
    " king": [1],
    " kings": [2],
    " queen": [3, 4],
    " queens": [3, 5],
    " dog": [6],
    " dogs": [7, 6],
    " sun": [9],
    " Sun": [9],
    " day": [10],
    " night": [11],
}


def fake_encode(text):
    return list(VOCAB[text])  # a KeyError if the word is not encoded after a space


PAIRS = (("king", "kings"), ("queen", "queens"), ("dog", "dogs"), ("sun", "Sun"), ("day", "night"))


def test_whole_keeps_single_token_pairs():
    ids, kept = pair_token_ids(fake_encode, PAIRS, rule="whole")
    assert kept == (("king", "kings"), ("day", "night"))
    assert ids.dtype == torch.int64
    assert ids.tolist() == [[1, 2], [10, 11]]
    default_ids, default_kept = pair_token_ids(fake_encode, PAIRS)
    assert torch.equal(default_ids, ids) and default_kept == kept


def test_last_keeps_last_tokens_and_drops_coinciding():
    ids, kept = pair_token_ids(fake_encode, list(PAIRS), rule="last")
    assert kept == (("king", "kings"), ("queen", "queens"), ("day", "night"))
    assert ids.tolist() == [[1, 2], [4, 5], [10, 11]]


def test_nothing_kept_gives_empty_tensor():
    ids, kept = pair_token_ids(fake_encode, [("dog", "dogs")], rule="whole")
    assert ids.shape == (0, 2) and ids.dtype == torch.int64
    assert kept == ()
    ids, kept = pair_token_ids(fake_encode, [], rule="last")
    assert ids.shape == (0, 2) and kept == ()


def test_accepts_tokenizer_ids_of_any_integer_type():
    ids, _ = pair_token_ids(lambda text: [np.int64(i) for i in VOCAB[text]], [("king", "kings")])
    assert ids.tolist() == [[1, 2]]


def test_errors():
    with pytest.raises(ValueError, match=r"rule: expected one of \('whole', 'last'\), got 'first'"):
        pair_token_ids(fake_encode, PAIRS, rule="first")
    with pytest.raises(ValueError, match="pair 1: expected a non-empty word without spaces, got ''"):
        pair_token_ids(fake_encode, [("king", "kings"), ("", "kings")])
    with pytest.raises(ValueError, match="pair 0: expected a non-empty word without spaces, got 'new york'"):
        pair_token_ids(fake_encode, [("king", "new york")])
    with pytest.raises(ValueError, match="pair 0: expected words as str, got int"):
        pair_token_ids(fake_encode, [("king", 3)])
    with pytest.raises(
        ValueError, match=r"pair 0: expected \(input word, output word\), got \('a', 'b', 'c'\)"
    ):
        pair_token_ids(fake_encode, [("a", "b", "c")])
    with pytest.raises(ValueError, match="pair 0: expected \\(input word, output word\\), got 'ab'"):
        pair_token_ids(fake_encode, ["ab"])
    with pytest.raises(ValueError, match=r"encode\(' king'\): expected at least one token id, got none"):
        pair_token_ids(lambda text: [], [("king", "kings")])
    with pytest.raises(ValueError, match=r"encode\(' king'\): expected a list of int token ids"):
        pair_token_ids(lambda text: ["k", "ing"], [("king", "kings")])


# ---------------------------------------------------------------- token ids, a real byte-level BPE


def test_with_trained_byte_level_bpe():
    tokenizers = pytest.importorskip("tokenizers", reason="needs the tokenizers package (the text extra)")
    sentences = [
        "the king and the kings spoke of love and loved the day and the night",
        "a good lord and the lords went to France and Paris and England and London",
        "the king spoke to the lords of the night; the day was good and the love was bad",
    ] * 20 + ["once upon a time Copenhagen and Reykjavik were far away"]
    tokenizer = tokenizers.ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(sentences, vocab_size=400, min_frequency=2, show_progress=False)

    def encode(text):
        return tokenizer.encode(text).ids

    pairs = tuple(pair for task in ANALOGY_TASKS.values() for pair in task)
    single = {word: encode(" " + word) for pair in pairs for word in pair}
    expected = tuple(
        (a, b) for a, b in pairs if len(single[a]) == 1 and len(single[b]) == 1 and single[a] != single[b]
    )
    ids, kept = pair_token_ids(encode, pairs, rule="whole")
    assert kept == expected
    assert ("king", "kings") in kept and ("good", "bad") in kept and ("Denmark", "Copenhagen") not in kept
    assert ids.tolist() == [[single[a][0], single[b][0]] for a, b in kept]
    for (a, b), (id_a, id_b) in zip(kept, ids.tolist(), strict=True):
        assert tokenizer.decode([id_a]) == " " + a and tokenizer.decode([id_b]) == " " + b

    ids, kept = pair_token_ids(encode, pairs, rule="last")
    assert kept == tuple((a, b) for a, b in pairs if single[a][-1] != single[b][-1])
    assert ids.tolist() == [[single[a][-1], single[b][-1]] for a, b in kept]
