"""UTS #39 skeletons, script mixing and invisible characters (bastion.confusables)."""

from __future__ import annotations

import pytest

from bastion.confusables import has_invisible, mixes_scripts, skeleton, skeleton_digest
from bastion.users.models import fold


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("admin", "\u0430dmin"),  # Cyrillic a
        ("admin", "adm\u0131n"),  # dotless i
        ("admin", fold("ADM\u0130N")),  # capital I with dot: folds to i + combining dot above
        ("admin", "adrnin"),  # "rn" reads as "m"
        ("paypal", "\u0440\u0430\u0443\u0440\u0430l"),  # Cyrillic r, a, u
        ("google", "g\u03bf\u03bfgle"),  # Greek omicron
        ("scope", "\u0455\u0441\u043e\u0440\u0435"),  # all Cyrillic
    ],
)
def test_look_alikes_share_a_skeleton(one: str, other: str) -> None:
    assert one != other
    assert skeleton(one) == skeleton(other)
    assert skeleton_digest(one) == skeleton_digest(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [("admin", "admins"), ("alice", "alicia"), ("bob", "bop"), ("jörg", "jorg"), ("ana", "ána")],
)
def test_different_looking_names_keep_different_skeletons(one: str, other: str) -> None:
    assert skeleton(one) != skeleton(other)
    assert skeleton_digest(one) != skeleton_digest(other)


def test_skeleton_follows_the_published_example() -> None:
    # UTS #39's own example: mathematical and other look-alike letters spelling "paypal".
    assert skeleton("\U0001d52d\U0001d4b6\u1eff\U0001d561\U0001d552\u2113") == skeleton("paypal")


def test_skeleton_drops_default_ignorable_characters() -> None:
    assert skeleton("ad\u200bmin\u3164") == skeleton("admin")


def test_a_visible_combining_dot_still_counts() -> None:
    # Over a letter without a dot of its own the dot shows: "ȧ" is not "a".
    assert skeleton("a\u0307") != skeleton("a")
    assert skeleton("i\u0307") == skeleton("i")


def test_skeleton_digest_is_hex_sha256() -> None:
    digest = skeleton_digest("admin")

    assert len(digest) == 64
    assert int(digest, 16) >= 0


@pytest.mark.parametrize(
    "name",
    [
        "alice",
        "j\u00f6rg.m\u00fcller_2",
        "\u0418\u0432\u0430\u043d",  # Cyrillic
        "\u0395\u03bb\u03ad\u03bd\u03b7",  # Greek
        "\u5c71\u7530\u305f\u308d\u3046",  # Han + Hiragana: Japanese
        "tanaka\u592a\u90ce",  # Latin + Han
        "kim\uae40\u91d1",  # Latin + Hangul + Han: Korean
        "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",  # Arabic
        "123-456",  # common characters only
    ],
)
def test_one_script_or_latin_with_cjk_does_not_mix(name: str) -> None:
    assert not mixes_scripts(name)


@pytest.mark.parametrize(
    "name",
    [
        "\u0430dmin",  # Latin + Cyrillic
        "alpha\u03b2",  # Latin + Greek
        "\u0418\u0432\u0430n",  # Cyrillic + Latin
        "\u0395\u03bb\u0435",  # Greek + Cyrillic
        "\u3042\uae40",  # Hiragana + Hangul
    ],
)
def test_letters_of_different_scripts_mix(name: str) -> None:
    assert mixes_scripts(name)


@pytest.mark.parametrize(
    "text", ["a\u3164", "\u115fa", "a\u034f", "a\ufe0f", "a\u200b", "a\u00ad", "a\U000e0041"]
)
def test_default_ignorable_characters_are_invisible(text: str) -> None:
    assert has_invisible(text)


def test_ordinary_text_has_nothing_invisible() -> None:
    assert not has_invisible("alice_b.c-d@example.org \u00e9\u4e2d")
