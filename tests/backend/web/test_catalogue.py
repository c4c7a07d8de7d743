"""The screen words' gettext catalogues (issue 13): backend/web/locale/{da,en}/LC_MESSAGES/messages.po.

Every key the code and the templates use (what ``pybabel extract -F backend/web/babel.cfg -k t -k N_``
finds) has words in both languages, and the two catalogues hold the same keys with the same
placeholders, none fuzzy or obsolete."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from backend.web import i18n

ROOT = Path(__file__).resolve().parents[3]
CFG = ROOT / "backend" / "web" / "babel.cfg"


def _catalogue(lang: str) -> Catalog:
    with (i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=lang)


def _used_keys() -> set[str]:
    with CFG.open() as f:
        method_map, options_map = parse_mapping_cfg(f, str(CFG))
    keys: set[str] = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords={"t": None, "N_": None}
    ):
        keys.add(message if isinstance(message, str) else message[0])
    return keys


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.fixture(scope="module")
def catalogues() -> dict[str, Catalog]:
    return {lang: _catalogue(lang) for lang in ("da", "en")}


@pytest.fixture(scope="module")
def used() -> set[str]:
    return _used_keys()


def test_extraction_finds_the_templates_and_the_code(used: set[str]) -> None:
    # From a template, from Python code (errors.py's N_ markers, worklist_actions' t()), and a computed family.
    assert {"kvitter_all_green", "not_found_text", "note_too_long", "tr_sla_breached", "flag_clock_not_set"} <= used


@pytest.mark.parametrize("lang", ["da", "en"])
def test_every_used_key_has_words(lang: str, catalogues: dict[str, Catalog], used: set[str]) -> None:
    cat = catalogues[lang]
    missing = sorted(k for k in used if k not in cat or not cat[k].string)
    assert missing == [], f"keys without {lang} words (add them to locale/{lang}/LC_MESSAGES/messages.po): {missing}"


def test_both_languages_hold_the_same_keys_and_placeholders(catalogues: dict[str, Catalog]) -> None:
    da = {m.id: m.string for m in catalogues["da"] if m.id}
    en = {m.id: m.string for m in catalogues["en"] if m.id}
    assert sorted(set(da) ^ set(en)) == []
    differ = sorted(k for k in da if _placeholders(str(da[k])) != _placeholders(str(en[k])))
    assert differ == [], f"placeholders differ between da and en: {differ}"


@pytest.mark.parametrize("lang", ["da", "en"])
def test_no_entry_is_fuzzy_or_obsolete(lang: str, catalogues: dict[str, Catalog]) -> None:
    # A fuzzy entry is left out of the compiled catalogue (the page would show the key); an obsolete
    # one (#~, after pybabel update) is a key extraction no longer finds: a computed key needs N_.
    cat = catalogues[lang]
    assert [m.id for m in cat if m.id and m.fuzzy] == []
    assert list(cat.obsolete) == []


@pytest.mark.parametrize("lang", ["da", "en"])
def test_extraction_finds_every_entry(lang: str, catalogues: dict[str, Catalog], used: set[str]) -> None:
    # What pybabel update would mark obsolete (and so drop from the page): a key only ever looked up
    # by a computed name needs N_("key") where the name is chosen, or in i18n.DYNAMIC_KEYS.
    unused = sorted(str(m.id) for m in catalogues[lang] if m.id and m.id not in used)
    assert unused == [], f"entries extraction does not find (mark them with N_): {unused}"


def test_the_translator_reads_the_catalogues() -> None:
    da, en = i18n.translator("da"), i18n.translator("en")
    assert da("kvitter_all_green") == "Kvittér alle grønne"
    assert en("kvitter_all_green") == "Acknowledge all green"
    assert da("count_red", n=2) == "2 røde"
    assert da("no_such_key_anywhere") == "no_such_key_anywhere"  # shows, and the crawl catches it
    assert i18n.lookup("da", "no_such_key_anywhere") is None


def test_numbers_are_written_as_each_language_writes_them() -> None:
    assert i18n.number(87.0, "da") == "87"
    assert i18n.number(36.55, "da") == "36,6"
    assert i18n.number(36.5, "en") == "36.5"
    assert i18n.number(3.1, "da", 2) == "3,10"
    assert i18n.number(1250.0, "da") == "1250"
    assert i18n.number(None, "da") == "–"
    # Beyond what babel's decimal quantize takes (a typed 1e308): written as typed, never an error.
    assert i18n.number(1e308, "da") == "1e+308" and i18n.number(float("nan"), "en") == "nan"


def test_the_code_keeps_no_word_dict() -> None:
    # The words live in the catalogues only: a dict of (Danish, English) pairs back in i18n.py is a regression.
    source = Path(i18n.__file__).read_text(encoding="utf-8")
    assert re.search(r'"[\w/%°]+":\s*\(\s*"', source) is None
