"""modalmerge.shellwords.split gives the words shlex.split gives."""

from __future__ import annotations

import json
import random
import shlex

import pytest

from modalmerge.shellwords import split

ALPHABET = "ab -_./'\"{}:,=$#>&|*\t\n\\é"


def test_the_words_of_quoted_values_are_shlex_s():
    rng = random.Random(0)
    for _ in range(2000):
        values = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))
                  for _ in range(rng.randint(1, 6))]  # fmt: skip
        text = " ".join(shlex.quote(v) for v in values)
        assert split(text) == shlex.split(text) == values


def test_a_formatted_command_with_json_settings_and_a_redirection():
    settings = json.dumps({"detrend": True, "high_pass": 0.01, "name": "it's"})
    text = (f"modalmerge preprocess --settings {shlex.quote(settings)} --t1 'a b.nii.gz'"
            ' --time-split "x y" > logs/a.log 2>&1')  # fmt: skip
    assert split(text) == shlex.split(text)
    assert split(text)[3] == settings


@pytest.mark.parametrize("text", ["a 'b", 'a "b', "a\\ b", 'a "b\\"c"', "", "  ", "a'b'c\"d\"e"])
def test_other_text_gives_what_shlex_gives_or_its_error(text):
    try:
        expected = shlex.split(text)
    except ValueError:
        with pytest.raises(ValueError):
            split(text)
        return
    assert split(text) == expected
