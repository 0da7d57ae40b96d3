"""bastion.i18n: which language a request gets, messages translated when shown, dates with
their zone, and a complete Chinese catalogue (no .mo kept in git)."""

from __future__ import annotations

import contextvars
import importlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from gettext import GNUTranslations
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po

from bastion.i18n import (
    LANGUAGES,
    current_language,
    from_accept_language,
    gettext,
    lazy,
    lazy_plural,
    ngettext,
    normalize_language,
    use_language,
)
from bastion.i18n.context import set_language
from bastion.i18n.formatting import (
    MAX_UTC_OFFSET,
    format_duration,
    format_when,
    parse_utc_offset,
    zone_label,
)
from bastion.i18n.languages import choose_language

ROOT = Path(__file__).resolve().parent.parent.parent
# 2026-12-03 18:38:00 UTC
MOMENT = datetime(2026, 12, 3, 18, 38, tzinfo=UTC).timestamp()


def in_context(function: Callable[[], Any]) -> Any:
    """Run ``function`` in a copy of the context: set_language stays inside it."""
    return contextvars.copy_context().run(function)


# --- tags and Accept-Language ---------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        ("en", "en"),
        ("EN-gb", "en"),
        ("en_US", "en"),
        ("zh", "zh-CN"),
        ("zh-CN", "zh-CN"),
        ("zh_cn", "zh-CN"),
        ("zh-Hans", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("zh-SG", "zh-CN"),
        (" zh-cn ", "zh-CN"),
    ],
)
def test_normalize_language_maps_tags_onto_the_supported_languages(tag: str, language: str) -> None:
    assert normalize_language(tag) == language


@pytest.mark.parametrize(
    "tag", [None, "", "fr", "de-DE", "zh-TW", "zh-Hant", "zh-HK", "english", "e" + "n" * 40]
)
def test_normalize_language_refuses_what_bastion_does_not_speak(tag: str | None) -> None:
    """Traditional Chinese is not Simplified Chinese; an overlong tag is nothing."""
    assert normalize_language(tag) is None


def test_the_supported_languages_are_english_and_simplified_chinese() -> None:
    assert set(LANGUAGES) == {"en", "zh-CN"}


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("fr-FR,fr;q=0.9,zh;q=0.5,en;q=0.3", "zh-CN"),  # the best one Bastion speaks
        ("en;q=0.5, zh-CN;q=0.8", "zh-CN"),  # weights, not order
        ("zh-CN;q=0.7, en;q=0.7", "zh-CN"),  # a tie keeps the header's order
        ("en;q=0.7, zh-CN;q=0.7", "en"),
        ("zh-CN;q=0, en;q=0.1", "en"),  # q=0 refuses
        ("zh-TW,zh-HK;q=0.9,en;q=0.5", "en"),  # Traditional Chinese is not zh-CN
        ("*, zh-CN;q=0.5", "zh-CN"),
        ("en;q=abc, zh-CN;q=0.2", "zh-CN"),  # a malformed weight drops that item only
        ("en;q=1.5, zh-CN;q=0.2", "zh-CN"),  # above 1 is no weight
    ],
)
def test_accept_language_is_read_by_weight(header: str, language: str) -> None:
    assert from_accept_language(header) == language


@pytest.mark.parametrize("header", [None, "", "fr, de;q=0.5", "zh-CN;q=0", "zh-TW"])
def test_accept_language_without_a_supported_language_is_none(header: str | None) -> None:
    assert from_accept_language(header) is None


def test_choose_language_order_is_query_cookie_user_choice_accept_language_default() -> None:
    everything: dict[str, Any] = {
        "query": "zh-CN",
        "cookie": "en",
        "user_choice": "en",
        "accept_language": "en",
        "default": "en",
    }
    assert choose_language(**everything) == "zh-CN"
    assert choose_language(**{**everything, "query": None, "cookie": "zh-CN"}) == "zh-CN"
    assert choose_language(**{**everything, "query": "fr", "cookie": "zh-CN"}) == "zh-CN"
    assert (
        choose_language(query=None, cookie=None, user_choice="zh-CN", accept_language="en")
        == "zh-CN"
    )
    assert (
        choose_language(query=None, cookie="xx", user_choice=None, accept_language="zh") == "zh-CN"
    )
    assert choose_language(query=None, cookie=None, user_choice=None, accept_language=None) == "en"
    assert (
        choose_language(
            query=None, cookie=None, user_choice=None, accept_language="fr", default="zh-CN"
        )
        == "zh-CN"
    )


# --- messages -------------------------------------------------------------------------


def test_gettext_translates_into_the_current_language_and_fills_placeholders() -> None:
    assert current_language() == "en"
    assert gettext("Sign in") == "Sign in"
    with use_language("zh-CN"):
        assert current_language() == "zh-CN"
        assert gettext("Sign in") == "登录"
    assert current_language() == "en"
    assert gettext("Not in any catalogue: %(name)s", name="x") == "Not in any catalogue: x"


def test_lazy_text_is_translated_when_shown_in_the_language_of_that_moment() -> None:
    message = lazy("Sign in")
    assert str(message) == "Sign in"
    with use_language("zh-CN"):
        assert str(message) == "登录"
        assert f"{message}" == "登录"
        assert message == "登录"
        assert message.__html__() == "登录"
    assert str(message) == "Sign in"
    assert "Sign" in message


def test_lazy_text_fills_placeholders_and_escapes_in_html() -> None:
    message = lazy("Not in any catalogue: %(name)s", name="<b>")
    assert str(message) == "Not in any catalogue: <b>"
    assert message.__html__() == "Not in any catalogue: &lt;b&gt;"
    assert str(message.format(name="x")) == "Not in any catalogue: x"


def test_ngettext_chooses_the_english_plural_and_fills_num() -> None:
    assert ngettext("%(num)d day", "%(num)d days", 1) == "1 day"
    assert ngettext("%(num)d day", "%(num)d days", 0) == "0 days"
    assert ngettext("%(num)d day", "%(num)d days", 14) == "14 days"
    with use_language("zh-CN"):
        assert ngettext("%(num)d day", "%(num)d days", 1) == "1 天"
        assert ngettext("%(num)d day", "%(num)d days", 14) == "14 天"


def test_lazy_plural_follows_the_count_and_the_language() -> None:
    message = lazy_plural("%(num)d day", "%(num)d days", 3)
    assert str(message) == "3 days"
    with use_language("zh-CN"):
        assert str(message) == "3 天"


def test_durations_are_in_the_largest_unit_that_divides_them() -> None:
    assert format_duration(14 * 86_400) == "14 days"
    assert format_duration(3_600) == "1 hour"
    assert format_duration(90 * 60) == "90 minutes"
    assert format_duration(61) == "61 seconds"
    with use_language("zh-CN"):
        assert format_duration(14 * 86_400) == "14 天"


# --- dates and zones ------------------------------------------------------------------


def test_format_when_without_an_offset_is_utc_and_says_so() -> None:
    assert format_when(MOMENT) == "Dec 3, 2026 6:38\u202fPM UTC"  # CLDR's narrow space
    with use_language("zh-CN"):
        assert format_when(MOMENT) == "2026年12月3日 18:38 UTC"
    assert format_when(None) == "-"


def test_format_when_shows_the_readers_zone_with_its_offset() -> None:
    def chinese_reader() -> str:
        set_language("zh-CN", 8 * 60)
        return format_when(MOMENT)

    def indian_reader() -> str:
        set_language("en", 5 * 60 + 30)
        return format_when(MOMENT)

    def western_reader() -> str:
        set_language("en", -5 * 60)
        return format_when(MOMENT)

    assert in_context(chinese_reader) == "2026年12月4日 02:38 UTC+08:00"  # the next day there
    assert in_context(indian_reader) == "Dec 4, 2026 12:08\u202fAM UTC+05:30"
    assert in_context(western_reader) == "Dec 3, 2026 1:38\u202fPM UTC-05:00"
    assert format_when(MOMENT).endswith(" UTC")  # the readers' zones stayed in their contexts


def test_zone_labels() -> None:
    assert zone_label(None) == "UTC"
    assert zone_label(0) == "UTC"
    assert zone_label(480) == "UTC+08:00"
    assert zone_label(-330) == "UTC-05:30"
    assert zone_label(MAX_UTC_OFFSET) == "UTC+14:00"


@pytest.mark.parametrize(
    ("value", "minutes"),
    [
        ("0", 0),
        ("480", 480),
        ("-300", -300),
        ("840", 840),  # UTC+14, the farthest east
        ("-840", -840),
        ("841", None),
        ("-841", None),
        ("99999", None),
        ("123456", None),  # longer than any offset
        ("", None),
        (None, None),
        ("8h", None),
        ("4.5", None),
    ],
)
def test_parse_utc_offset_takes_only_real_offsets(value: str | None, minutes: int | None) -> None:
    assert parse_utc_offset(value) == minutes


# --- the catalogue --------------------------------------------------------------------


@pytest.fixture
def translations_tool() -> Iterator[Any]:
    """tools/translations.py, imported as the wheel's build hook imports it."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        yield importlib.import_module("translations")
    finally:
        sys.path.remove(str(ROOT / "tools"))
        sys.modules.pop("translations", None)


def test_the_chinese_catalogue_is_complete(translations_tool: Any) -> None:
    """Every message marked in the code and templates has a Chinese translation, none
    fuzzy, every placeholder kept (tools/translations.py check)."""
    problems = translations_tool.problems()
    assert problems == [], "\n".join(problems[:40]) + (
        f"\n... {len(problems)} in all" if len(problems) > 40 else ""
    )


def test_no_compiled_catalogue_is_kept_in_git() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.mo"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert tracked.stdout.split() == []


def documented_pybabel_commands() -> list[list[str]]:
    """The ``pybabel`` lines of docs/languages.md, split into words, comments dropped."""
    lines = (ROOT / "docs" / "languages.md").read_text().splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.startswith("pybabel ")]


@pytest.fixture(scope="module")
def pybabel_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs the page's pybabel commands as written, once for the tests that read what they
    made, on a copy of the catalogues: the template and the locale folder they name are put
    in a temporary folder."""
    tmp_path = tmp_path_factory.mktemp("pybabel")
    locale = tmp_path / "locale"
    shutil.copytree(ROOT / "src" / "bastion" / "locale", locale)
    moved = {"bastion.pot": str(tmp_path / "bastion.pot"), "src/bastion/locale": str(locale)}
    commands = documented_pybabel_commands()
    assert [command[1] for command in commands] == ["extract", "update", "compile"]
    for command in commands:
        argv = [str(Path(sys.executable).with_name("pybabel"))]
        argv += [moved.get(word, word) for word in command[1:]]
        subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    return tmp_path


def test_pybabel_with_babel_cfg_extracts_the_messages_the_tool_extracts(
    translations_tool: Any, pybabel_run: Path
) -> None:
    with (pybabel_run / "bastion.pot").open("rb") as file:
        from_pybabel = {message.id for message in read_po(file) if message.id}
    from_tool = {message.id for message in translations_tool.extract() if message.id}
    assert len(from_tool) > 300
    assert from_pybabel == from_tool


def test_pybabel_update_and_compile_keep_every_chinese_translation(
    translations_tool: Any, pybabel_run: Path
) -> None:
    """``pybabel update`` against a fresh extract changes no translation of the kept .po
    (it is in step with the code), and ``pybabel compile`` turns it into a catalogue that
    says what the .po says (it would skip one whose header is fuzzy)."""
    po = pybabel_run / "locale" / "zh_CN" / "LC_MESSAGES" / "bastion.po"
    with po.open("rb") as file:
        updated = {m.id: m.string for m in read_po(file) if m.id and not m.fuzzy}
    kept = {m.id: m.string for m in translations_tool.read("zh_CN") if m.id}
    assert updated == kept
    with (po.with_suffix(".mo")).open("rb") as file:
        compiled = GNUTranslations(file)
    assert compiled.gettext("Unknown device") == kept["Unknown device"] == "未知设备"
