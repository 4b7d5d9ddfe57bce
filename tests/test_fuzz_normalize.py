"""Property-based fuzzing of every public normaliser (pipeline/normalize.py) and click-id
function (pipeline/click_ids.py), for every platform variant.

Whatever arrives (text in any script, lone surrogates, numbers, dates, bytes, nested lists and
dicts, odd options), each function answers with a value of its documented shape or a
documented refusal (``None`` with a reason, ``{}``, ``False``, or the ``ValueError`` that
``fbc_from_fbclid`` documents), never an exception and never the ``internal_error`` drop that
``normalize._field`` turns an exception into. Normalising an already normalised value gives
the same value (so the same hash), and a value that already is a SHA-256 hex digest is passed
through, never hashed twice.

The cases under "regressions" are bugs these properties found (a raw value that
normalised into 64 hex characters passed for a digest, case mappings that grew a value past
the length limit, superscript digits in dates, ints too long for str(), fbclids that made
no valid fbc); each is fixed, and its case keeps it fixed.

``TRACKLAYER_FUZZ_EXAMPLES`` raises the number of inputs per property for a long run, as in
tests/test_fuzz.py; ``bench/fuzz.py`` runs a coverage-guided fuzzer over the same functions.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
import unicodedata
from datetime import date
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.test_normalize import DATE_LIKE  # dates in every separator and order
from tracklayer.pipeline import click_ids as c
from tracklayer.pipeline import normalize as n
from tracklayer.pipeline.normalize import Normalized, normalize

EXAMPLES = int(os.environ.get("TRACKLAYER_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
# The per-field cases of the targeted properties below need far fewer inputs.
FEW = settings(FUZZ, max_examples=max(20, EXAMPLES // 5))
TODAY = date(2026, 12, 3)
FAR_FUTURE_MS = 10**13  # 13-digit Unix milliseconds last until the year 2286
NOW_MS = 1_796_000_000_000

KINDS = sorted(set(n.FIELDS.values()))
VARIANTS = sorted(n.VARIANTS)
HEX64 = re.compile(r"[0-9a-f]{64}")

# -- strategies ----------------------------------------------------------------------------

# Every code point, lone surrogates included (st.text() leaves category Cs out).
ANY_CHAR = st.characters(exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=60)
DECIMAL_DIGITS = "0123456789٠١٢٣٤٥٦٧٨٩۰۱۲۳०१२३০১২৩０１２３４５６７８９𝟎𝟏𝟐"
DIGIT_NOT_DECIMAL = "²³¹⁰⁴①②⑴⒈⓵𝟙"  # str.isdigit() but not decimal: int() refuses them
NUMERIC_NOT_DIGIT = "½⅓Ⅷⅻ〇"
JUNK = (
    " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2003\u200b\u2028\u3000\ufeff\x00\x7f"  # spaces, controls
    "+-().#/_,;:@'\"<>[]{}\\%~!?&=*"
)
MARKS = "\u0300\u0301\u0307\u0308\u0327\u200d\u05b7"
CASE_ODDITIES = "İıßẞǅǄǆΣσςϒᾈﬁﬀＫK𝔘𝔞Åﬃ"
TOKENS = [
    *"+@.-/",
    "00",
    "011",
    "+1",
    "+44",
    "+0044",
    "(0)",
    "( 0 )",
    " ext. 12",
    " x9",
    "#7",
    "415 555 0100",
    "020 7946 0958",
    "gmail.com",
    "googlemail.com",
    "example.com",
    "Ex-ample.co.uk",
    "+tag",
    "..",
    "jan",
    "February",
    "sept",
    "may",
    "1st",
    "16th",
    "of",
    "1997",
    "0000",
    "2/16/1997",
    "16.02.1997",
    "1997-02-16",
    "19970216",
    "16021997",
    "T10:00:00Z",
    "CA",
    "California",
    "Ontario",
    "Washington DC",
    "US",
    "USA",
    "U.S.A.",
    "United States",
    "UK",
    "Deutschland",
    "St. Martin",
    "the",
    "M1 1AE",
    "94107-1234",
    "00-950",
    "female",
    "M",
    "woman",
    "Zoë",
    "Zoe\u0308",
    "정",
    "Ἀθῆναι",
    "São Paulo",
    "undefined",
    "null",
    "{gclid}",
    "a" * 64,
    "ABCDEF" * 11,
]
FRAGMENT = st.one_of(
    st.sampled_from(TOKENS),
    st.text(DECIMAL_DIGITS, max_size=12),
    st.text(DIGIT_NOT_DECIMAL + NUMERIC_NOT_DIGIT, max_size=3),
    st.text(JUNK + MARKS, max_size=3),
    st.text(CASE_ODDITIES, max_size=4),
    st.text(ANY_CHAR, max_size=6),
)
JOINED = st.builds(
    lambda parts, separator: separator.join(parts),
    st.lists(FRAGMENT, max_size=8),
    st.sampled_from(["", " ", "-", ".", "/", "\t", "  "]),
)
HEX_DIGEST = st.builds(
    lambda raw, before, after: before + raw + after,
    st.text("0123456789abcdefABCDEF", min_size=64, max_size=64),
    st.sampled_from(["", " ", "\t", "\u3000", "\n "]),
    st.sampled_from(["", " ", "\xa0", "\r\n"]),
)
EMAIL_LIKE = st.builds(
    "{}{}@{}{}.{}{}".format,
    st.sampled_from(["", " ", "\t"]),
    st.text(
        string.ascii_letters + string.digits + ".+_-'" + CASE_ODDITIES, min_size=1, max_size=15
    ),
    st.sampled_from(
        ["gmail", "googlemail", "example", "Ex-ample", "xn--bcher-kva", "мойсайт", "1"]
    ),
    st.sampled_from(["", " ", "."]),
    st.sampled_from(["com", "co.uk", "io", "рф", "1", "c"]),
    st.sampled_from(["", " ", "\n"]),
)
PHONE_LIKE = st.text("0123456789 +-().x#" + DECIMAL_DIGITS[10:20], max_size=24)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True),
    st.complex_numbers(),
    ANY_TEXT,
    st.binary(max_size=20),
    st.dates(),
    st.datetimes(),
    st.builds(object),
)
NESTED = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
        st.frozensets(st.integers() | st.text(max_size=4), max_size=3),
    ),
    max_leaves=12,
)
VALUES = st.one_of(NESTED, JOINED, EMAIL_LIKE, PHONE_LIKE, DATE_LIKE, HEX_DIGEST)

COUNTRY_WORDS = [
    "US", "us", "USA", "United States", "CA", "Canada", "GB", "UK", "DE", "Deutschland",
    "FR", "IT", "JP", "BR", "IN", "RU", "AU", "PL", "NL", "ZZ", "XK", "AQ", "", " ",
]  # fmt: skip
COUNTRY_OPTION = st.one_of(
    st.none(), st.sampled_from(COUNTRY_WORDS), st.text(max_size=6), st.integers(), st.just([])
)
DEFAULT_COUNTRY = st.one_of(
    st.sampled_from([w for w in COUNTRY_WORDS if len(w) == 2]),
    st.text(string.ascii_letters, min_size=2, max_size=2),
    st.text(max_size=4),
    st.none(),
    st.integers(),
)


# -- the documented shape of each field ------------------------------------------------------


def _letters_only(text: str) -> bool:
    return all(unicodedata.category(ch)[0] in "LM" for ch in text)


def _check_shape(kind: str, variant: str, value: str, country: object) -> None:
    """What the normalised ``value`` of ``kind`` looks like (the input was not a digest)."""
    assert isinstance(value, str) and value
    assert value == value.strip()
    if kind == "email":
        # [meta-cip] trimmed and lowercased; a syntax check passed
        assert value == value.lower()
        assert value.count("@") == 1 and len(value) <= 254
        assert not any(ch.isspace() for ch in value)
        local, domain = value.split("@")
        assert local and "." in domain
        if variant == "google" and domain in ("gmail.com", "googlemail.com"):
            assert "." not in local and "+" not in local
    elif kind == "phone":
        # E.164: country code and number, at most 15 digits; Meta wants the digits only
        pattern = r"[1-9][0-9]{6,14}" if variant == "meta" else r"\+[1-9][0-9]{6,14}"
        assert re.fullmatch(pattern, value), value
    elif kind in ("first_name", "last_name", "city"):
        assert len(value) <= 128
        assert value == unicodedata.normalize("NFC", value)
        assert value.lower() == value
        words = value.split(" ") if variant == "google" else [value]
        assert all(word and _letters_only(word) for word in words), value
    elif kind == "state":
        assert len(value) <= 128 and _letters_only(value) and value.lower() == value
        region = n.country(country) if isinstance(country, str) and country.strip() else None
        if region in ("us", "ca"):
            assert re.fullmatch(r"[a-z]{2}", value)
    elif kind == "zip":
        assert re.fullmatch(r"[a-z0-9]{2,10}", value) and any(ch.isdigit() for ch in value)
        region = n.country(country) if isinstance(country, str) and country.strip() else None
        if region == "us":
            assert re.fullmatch(r"[0-9]{5}", value)
    elif kind == "country":
        assert re.fullmatch(r"[a-z]{2}", value)
        assert n.country(value) == value
    elif kind == "date_of_birth":
        assert re.fullmatch(r"[0-9]{8}", value)
        born = date(int(value[:4]), int(value[4:6]), int(value[6:]))
        assert date(1900, 1, 1) <= born <= TODAY
    elif kind == "gender":
        assert value in ("f", "m")
    elif kind == "external_id":
        assert value.lower() == value
        assert not any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in value)
    else:  # pragma: no cover - a new field must get its own shape here
        raise AssertionError(f"no shape for {kind}")


def _again(kind: str, variant: str, value: str) -> str:
    """The normalised value as it would be sent back in: Meta's phone digits carry no "+",
    and read without it they are national digits of the default country."""
    if kind == "phone" and variant == "meta" and not n.is_sha256_hex(value):
        return "+" + value
    return value


# -- the dispatcher: every field, every platform variant --------------------------------------


# Only these fields have per-platform rules; for the others the variant is drawn.
PER_VARIANT = {"email", "phone", "first_name", "last_name", "city"}
CASES = [(k, v) for k in KINDS for v in (VARIANTS if k in PER_VARIANT else ["drawn"])]


@pytest.mark.parametrize(("kind", "variant"), CASES)
@FUZZ
@given(
    value=VALUES,
    default_country=DEFAULT_COUNTRY,
    country=COUNTRY_OPTION,
    drawn=st.sampled_from(VARIANTS),
)
def test_every_field_and_variant_gives_its_shape_or_a_reason(
    kind, variant, value, default_country, country, drawn
):
    variant = drawn if variant == "drawn" else variant
    options = {"variant": variant, "default_country": default_country, "country": country}
    result = normalize(kind, value, today=TODAY, **options)
    assert isinstance(result, Normalized)
    assert (result.value is None) != (result.reason is None)
    assert result.reason is None or re.fullmatch(r"[a-z_]+", result.reason)
    assert result.reason != "internal_error", (kind, variant, value)
    if result.value is None:
        return
    if n.is_sha256_hex(value):
        assert result.value == value.strip().lower()  # taken as hashed by the sender
    else:
        _check_shape(kind, variant, result.value, country)
    # idempotent: what comes out goes in again unchanged, so it hashes the same
    again = normalize(kind, _again(kind, variant, result.value), today=TODAY, **options)
    assert again == result
    hashed = n.hash_once(result.value)
    assert HEX64.fullmatch(hashed)
    assert n.hash_once(again.value) == hashed
    assert n.hash_once(hashed) == hashed  # never hashed twice


@FUZZ
@given(field=st.sampled_from(sorted(n.FIELDS)), value=VALUES, variant=st.sampled_from(VARIANTS))
def test_meta_and_pipeline_field_names_are_the_same_field(field, value, variant):
    kind = n.FIELDS[field]
    assert normalize(field, value, variant=variant, today=TODAY) == normalize(
        kind, value, variant=variant, today=TODAY
    )


@FUZZ
@given(
    field=st.one_of(st.sampled_from(sorted(n.FIELDS)), NESTED),
    value=VALUES,
    variant=st.one_of(st.sampled_from(VARIANTS), NESTED),
    default_country=st.one_of(DEFAULT_COUNTRY, NESTED),
    country=st.one_of(COUNTRY_OPTION, NESTED),
)
def test_dispatcher_never_raises_on_odd_fields_and_options(
    field, value, variant, default_country, country
):
    result = normalize(
        field, value, variant=variant, default_country=default_country, country=country
    )
    assert isinstance(result, Normalized)
    assert (result.value is None) != (result.reason is None)
    if not (isinstance(field, str) and field in n.FIELDS):
        assert result == Normalized(None, "unknown_field")
    elif not (isinstance(variant, str) and variant in n.VARIANTS):
        assert result == Normalized(None, "unknown_variant")


# -- the public per-field functions ----------------------------------------------------------


def _public_calls(value, default_country, country, month_first):
    """(public function call, what the dispatcher answers for the same rules)."""
    dc = "US" if month_first else "GB"
    same = {"today": TODAY}
    return {
        "email": (n.email(value), normalize("email", value, variant="meta")),
        "email/google": (n.email(value, google=True), normalize("em", value, variant="google")),
        "phone": (
            n.phone(value, default_country=default_country),
            normalize("phone", value, variant="tiktok", default_country=default_country),
        ),
        "phone_digits": (
            n.phone_digits(value, default_country=default_country),
            normalize("ph", value, variant="meta", default_country=default_country),
        ),
        "name": (n.name(value), normalize("fn", value)),
        "name/spaces": (n.name(value, keep_spaces=True), normalize("fn", value, variant="google")),
        "first_name": (n.first_name(value), normalize("first_name", value)),
        "first_name/spaces": (
            n.first_name(value, keep_spaces=True),
            normalize("first_name", value, variant="google"),
        ),
        "last_name": (n.last_name(value), normalize("ln", value)),
        "last_name/spaces": (
            n.last_name(value, keep_spaces=True),
            normalize("last_name", value, variant="google"),
        ),
        "city": (n.city(value), normalize("ct", value)),
        "state": (n.state(value, country=country), normalize("st", value, country=country)),
        "zip_code": (n.zip_code(value, country), normalize("zp", value, country=country)),
        "country": (n.country(value), normalize("country", value)),
        "date_of_birth": (
            n.date_of_birth(value, month_first=month_first, today=TODAY),
            normalize("db", value, default_country=dc, **same),
        ),
        "gender": (n.gender(value), normalize("ge", value)),
        "external_id": (n.external_id(value), normalize("external_id", value)),
    }


@FUZZ
@given(
    value=VALUES,
    default_country=DEFAULT_COUNTRY,
    country=COUNTRY_OPTION,
    month_first=st.booleans(),
)
def test_public_functions_never_raise_and_agree_with_the_dispatcher(
    value, default_country, country, month_first
):
    for name, (public, dispatched) in _public_calls(
        value, default_country, country, month_first
    ).items():
        assert public is None or (isinstance(public, str) and public), name
        assert public == dispatched.value, name


@FUZZ
@given(digest=HEX_DIGEST, variant=st.sampled_from(VARIANTS), country=COUNTRY_OPTION)
def test_a_digest_passes_through_every_normaliser_unhashed(digest, variant, country):
    expected = digest.strip().lower()
    for kind in KINDS:
        assert normalize(kind, digest, variant=variant, country=country) == Normalized(
            expected, None
        ), kind
    for name, (public, _) in _public_calls(digest, "US", country, True).items():
        assert public == expected, name
    assert n.is_sha256_hex(digest)
    assert n.hash_once(digest) == expected  # documented: never hashed twice
    assert n.sha256_hex(digest) == hashlib.sha256(digest.encode()).hexdigest() != expected


@FUZZ
@given(value=st.one_of(ANY_TEXT, JOINED, HEX_DIGEST))
def test_hash_helpers(value):
    digest = n.sha256_hex(value)  # hashes whatever it is given, lone surrogates too
    assert HEX64.fullmatch(digest)
    assert digest == hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    once = n.hash_once(value)
    assert HEX64.fullmatch(once)
    assert once == (value.strip().lower() if n.is_sha256_hex(value) else digest)
    assert n.hash_once(once) == once


@FUZZ
@given(value=NESTED)
def test_is_sha256_hex_takes_anything(value):
    answer = n.is_sha256_hex(value)
    assert answer is (isinstance(value, str) and HEX64.fullmatch(value.strip().lower()) is not None)


# -- regressions: bugs these properties found, fixed ---------------------------------------------

# A raw value that normalises into 64 hex characters is taken for a sender's digest: hash_once
# (and pipeline/identity.py, which checks is_sha256_hex on the normalised value) passes it on
# unhashed, so the identifier itself goes out in a field meant for its SHA-256.
DISGUISED_DIGEST = st.builds(
    lambda letters, cuts, separator: "".join(
        ch + (separator if i in cuts else "") for i, ch in enumerate(letters)
    ),
    st.text("abcdefABCDEF", min_size=64, max_size=64),
    st.sets(st.integers(0, 62), min_size=1, max_size=4),
    st.sampled_from(["-", " ", ".", "'", "\t", "_"]),
)


@pytest.mark.parametrize(
    ("kind", "variant"),
    [(kind, variant) for kind in KINDS for variant in VARIANTS],
)
@FEW
@given(raw=st.one_of(DISGUISED_DIGEST, VALUES))
@example(raw="Abcdef-" * 9 + "abcdefabcd")
@example(raw="ab" * 16 + " " + "ab" * 16)
def test_a_raw_value_never_comes_out_looking_hashed(kind, variant, raw):
    assume(not n.is_sha256_hex(raw))
    result = normalize(kind, raw, variant=variant, today=TODAY)
    assert result.value is None or not n.is_sha256_hex(result.value), result.value


@pytest.mark.parametrize(
    "kind",
    KINDS,
)
@FEW
@given(
    raw=st.builds(
        lambda count, rest: "İ" * count + rest, st.integers(513, 1000), st.text("iI -", max_size=20)
    )
)
@example(raw="İ" * 600)
def test_idempotent_for_case_mappings_that_grow(kind, raw):
    once = normalize(kind, raw, today=TODAY)
    if once.value is not None:
        assert normalize(kind, once.value, today=TODAY) == once


@FUZZ
@given(
    month=st.sampled_from(["February", "feb", "Sept", "may"]),
    year=st.integers(1900, 2025).map(str),
    odd=st.text(DIGIT_NOT_DECIMAL, min_size=1, max_size=2),
    order=st.permutations([0, 1, 2]),
)
@example(month="February", year="1997", odd="²", order=[0, 1, 2])
def test_dates_with_superscript_digits_are_refused_cleanly(month, year, odd, order):
    parts = [month, year, odd]
    text = " ".join(parts[i] for i in order)
    assert normalize("date_of_birth", text, today=TODAY).reason != "internal_error"


@pytest.mark.parametrize(
    "kind",
    KINDS,
)
@FEW
@given(digits=st.integers(4301, 6000), sign=st.sampled_from([1, -1]))
@example(digits=5000, sign=1)
def test_huge_numbers_are_refused_cleanly(kind, digits, sign):
    assert normalize(kind, sign * 10**digits).reason != "internal_error"


# -- click ids ---------------------------------------------------------------------------------

PARAM_NAMES = st.one_of(
    st.sampled_from(sorted(c.CLICK_ID_PARAMS)),
    st.sampled_from(sorted(c.CLICK_ID_PARAMS)).map(str.upper),
    st.sampled_from(sorted(c.CLICK_ID_PARAMS)).map(lambda p: f" {p.lower()} "),
    st.sampled_from(["utm_source", "q", "ref", "page", "fbclid[]", ""]),
    st.text(max_size=8),
)
CLEAN_VALUE = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=" \"'<>\\`{}&#=+%"),
    min_size=1,
    max_size=120,
).filter(lambda v: v.lower() not in ("undefined", "null", "none", "nan", "true", "false"))
PARAM_VALUES = st.one_of(
    CLEAN_VALUE,
    st.text(max_size=30),
    st.text(string.printable, max_size=30),
    st.sampled_from(["undefined", "{gclid}", " x ", "a" * 501, "a" * 500, "%zz", "%00", "a%20b"]),
    ANY_TEXT,
)


def _query(pairs: list[tuple[str, str]], encode: bool) -> str:
    if encode:
        return urlencode(pairs, errors="surrogatepass")  # lone surrogates: bad UTF-8
    return "&".join(f"{name}={value}" for name, value in pairs)


URLS = st.one_of(
    st.builds(
        lambda scheme, host, path, query, fragment, encode: (
            f"{scheme}{host}{path}?{_query(query, encode)}"
            + (f"#{fragment[0]}?{_query(fragment[1], encode)}" if fragment else "")
        ),
        st.sampled_from(["https://", "http://", "", "//", "android-app://", "https://[::1"]),
        st.sampled_from(["shop.example.com", "xn--bcher-kva.example", "бюро.рф", "h:99999", ""]),
        st.sampled_from(["/", "/p", "/a b", "", "/%E2%82%AC"]),
        st.lists(st.tuples(PARAM_NAMES, PARAM_VALUES), max_size=5),
        st.none()
        | st.tuples(
            st.sampled_from(["/landing", "", "!"]),
            st.lists(st.tuples(PARAM_NAMES, PARAM_VALUES), max_size=3),
        ),
        st.booleans(),
    ),
    ANY_TEXT,
    JOINED,
    NESTED,
)


def _check_click_ids(found: object) -> None:
    assert isinstance(found, dict)
    assert set(found) <= set(c.CLICK_ID_PARAMS.values())
    for value in found.values():
        assert isinstance(value, str) and value and value == value.strip()
        assert len(value) <= c.MAX_VALUE_LENGTH
        assert value.isascii() and value.isprintable()
        assert not any(ch in " \"'<>\\`{}" for ch in value)
        assert value.lower() not in ("undefined", "null", "none", "nan", "true", "false")


@FUZZ
@given(url=URLS)
def test_from_url_never_raises_and_gives_clean_values(url):
    _check_click_ids(c.from_url(url))


@FUZZ
@given(
    ids=st.dictionaries(st.sampled_from(sorted(c.CLICK_ID_PARAMS)), CLEAN_VALUE, max_size=10),
    noise=st.lists(st.tuples(st.sampled_from(["utm_source", "q", "x"]), PARAM_VALUES), max_size=3),
    in_fragment=st.booleans(),
)
def test_click_ids_come_back_exactly_from_query_or_fragment(ids, noise, in_fragment):
    query = urlencode([*noise, *ids.items()], errors="surrogatepass")
    url = f"https://shop.example.com/#/landing?{query}" if in_fragment else f"/p?{query}"
    expected = {
        c.CLICK_ID_PARAMS[param]: value
        for param, value in ids.items()
        # an fbclid outside Meta's alphabet can make no fbc, so it is not taken at all
        if c.CLICK_ID_PARAMS[param] != "fbclid" or re.fullmatch(r"[A-Za-z0-9_-]+", value)
    }
    assert c.from_url(url) == expected


@FUZZ
@given(
    campaign=st.one_of(
        st.dictionaries(st.one_of(PARAM_NAMES, st.integers(), st.none()), PARAM_VALUES | NESTED),
        NESTED,
    )
)
def test_from_campaign_never_raises_and_gives_clean_values(campaign):
    _check_click_ids(c.from_campaign(campaign))


FBCLID_LIKE = st.one_of(
    st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=200),
    CLEAN_VALUE,
    st.text(max_size=20),
    NESTED,
)
MILLIS = st.one_of(st.integers(), st.integers(10**12, 10**13 - 1), st.booleans(), NESTED)


@FUZZ
@given(fbclid=FBCLID_LIKE, first_seen_ms=MILLIS)
def test_fbc_from_fbclid_gives_a_valid_fbc_or_the_documented_value_error(fbclid, first_seen_ms):
    try:
        fbc = c.fbc_from_fbclid(fbclid, first_seen_ms)
    except ValueError:
        return
    assert fbc == f"fb.1.{first_seen_ms}.{fbclid.strip()}"
    if first_seen_ms < FAR_FUTURE_MS:  # 14 digits (year 2286 on) are not an fbc's format
        assert c.is_valid_fbc(fbc), fbc


@FUZZ
@given(fbclid=st.text(string.ascii_letters + string.digits + "-_", min_size=482, max_size=500))
@example(fbclid="a" * 490)
def test_fbc_from_a_long_fbclid_is_valid(fbclid):
    assert c.is_valid_fbc(c.fbc_from_fbclid(fbclid, NOW_MS))


@FUZZ
@given(fbclid=CLEAN_VALUE, in_fragment=st.booleans())
@example(fbclid="abc.def", in_fragment=False)
def test_every_fbclid_from_a_url_makes_an_fbc(fbclid, in_fragment):
    query = urlencode({"fbclid": fbclid})
    found = c.from_url(f"https://shop.example.com/{'#/x' if in_fragment else ''}?{query}")
    assume("fbclid" in found)
    assert c.is_valid_fbc(c.fbc_from_fbclid(found["fbclid"], NOW_MS))


COOKIE_LIKE = st.one_of(
    st.builds(
        "fb.{}.{}.{}{}".format,
        st.integers(0, 120),
        st.integers(0, 10**14),
        st.one_of(
            st.integers(0, 10**21).map(str), FBCLID_LIKE.filter(lambda v: isinstance(v, str))
        ),
        st.sampled_from(["", ".AbCdEf12", ".Ab", ".abc", "\n", " "]),
    ),
    ANY_TEXT,
    NESTED,
)


@FUZZ
@given(value=COOKIE_LIKE)
def test_cookie_checks_take_anything(value):
    fbc, fbp = c.is_valid_fbc(value), c.is_valid_fbp(value)
    assert fbc in (True, False) and fbp in (True, False)
    if fbc or fbp:
        assert isinstance(value, str) and len(value) <= c.MAX_VALUE_LENGTH
        assert value.startswith("fb.") and value.isascii() and value == value.strip()


# -- nothing public is left out ------------------------------------------------------------------

FUZZED_NORMALIZE = {
    "city", "country", "date_of_birth", "email", "external_id", "first_name", "gender",
    "hash_once", "is_sha256_hex", "last_name", "name", "normalize", "phone", "phone_digits",
    "sha256_hex", "state", "zip_code",
}  # fmt: skip
FUZZED_CLICK_IDS = {"fbc_from_fbclid", "from_campaign", "from_url", "is_valid_fbc", "is_valid_fbp"}


def test_every_public_function_is_fuzzed():
    public = {name for name in n.__all__ if callable(getattr(n, name))} - {"Normalized"}
    assert public == FUZZED_NORMALIZE
    assert {name for name in c.__all__ if callable(getattr(c, name))} == FUZZED_CLICK_IDS
    assert set(n.VARIANTS) == {"meta", "google", "tiktok"}
