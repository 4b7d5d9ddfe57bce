"""Identifier normalisation against the platforms' own documented examples.

Expected values come from Meta's "Customer Information Parameters" page (with its expected
SHA-256 outputs), Google's Data Manager "Format user data" page and TikTok's Events API
parameter descriptions; the oracle test at the end compares with Meta's official Python SDK.
"""

from __future__ import annotations

import string
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklayer.pipeline import normalize as n
from tracklayer.pipeline.normalize import Normalized, normalize

TODAY = date(2026, 12, 3)
SOME_HASH = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"


# -- Meta's documented examples, down to the expected hash ---------------------------------


@pytest.mark.parametrize(
    ("field", "raw", "normalised", "expected_sha256"),
    [
        (
            "em",
            "John_Smith@gmail.com",
            "john_smith@gmail.com",
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
        ),
        (
            "ph",
            "(650)555-1212",
            "16505551212",
            "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
        ),
        (
            "fn",
            "Mary",
            "mary",
            "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec",
        ),
        (
            "fn",
            "정",
            "정",
            "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14",
        ),
        (
            "fn",
            "Valéry",
            "valéry",
            "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c",
        ),
        (
            "db",
            "2/16/1997",
            "19970216",
            "01acdbf6ec7b4f478a225f1a246e5d6767eeab1a7ffa17f025265b5b94f40f0c",
        ),
        (
            "country",
            "United States",
            "us",
            "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621",
        ),
    ],
)
def test_meta_documented_examples(field, raw, normalised, expected_sha256):
    result = normalize(field, raw, variant="meta", today=TODAY)
    assert result == Normalized(normalised, None)
    assert n.sha256_hex(result.value) == expected_sha256


@pytest.mark.parametrize(
    ("field", "raw", "normalised"),
    [
        ("ct", "Paris", "paris"),
        ("ct", "London", "london"),
        ("ct", "New York", "newyork"),
        ("st", "AZ", "az"),
        ("st", "CA", "ca"),
        ("zp", "94035", "94035"),
        ("zp", "1987", "1987"),
        ("zp", "75018", "75018"),
        ("zp", "M1 1AE", "m11ae"),
        ("ge", "f", "f"),
        ("ge", "m", "m"),
    ],
)
def test_meta_documented_formats(field, raw, normalised):
    assert normalize(field, raw) == Normalized(normalised, None)


# -- email ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  John_Smith@Gmail.COM ", "john_smith@gmail.com"),
        ("first.last+tag@example.co.uk", "first.last+tag@example.co.uk"),
        ("ÉLODIE@exemple.fr", "élodie@exemple.fr"),
        ("user@sub.domain-name.io", "user@sub.domain-name.io"),
    ],
)
def test_email_is_trimmed_and_lowercased(raw, expected):
    assert n.email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "plainaddress",
        "two@@example.com",
        "a@b@example.com",
        "@example.com",
        "user@",
        "user@localhost",
        "user@example.c",
        "user@example.123",
        "user@-example.com",
        "user@example..com",
        ".user@example.com",
        "user.@example.com",
        "us..er@example.com",
        "john smith@example.com",
        "user@exa mple.com",
        "<user@example.com>",
        "user@example.com,other@example.com",
        "x" * 65 + "@example.com",
    ],
)
def test_email_syntax_check_rejects(raw):
    assert n.email(raw) is None
    assert normalize("email", raw) == Normalized(None, "invalid_email")


def test_google_gmail_rule_follows_data_manager_examples():
    # developers.google.com/data-manager/api/devguides/concepts/formatting
    assert n.email("cloudy.sanfrancisco+shopping@gmail.com", google=True) == (
        "cloudysanfrancisco@gmail.com"
    )
    assert n.email("user.name+NYC@Example.com", google=True) == "user.name+nyc@example.com"
    assert n.email("J.Doe+promo@GoogleMail.com", google=True) == "jdoe@googlemail.com"


def test_gmail_rule_only_for_google():
    assert n.email("j.doe+promo@gmail.com") == "j.doe+promo@gmail.com"
    assert normalize("em", "j.doe+promo@gmail.com", variant="meta").value == (
        "j.doe+promo@gmail.com"
    )
    assert normalize("email", "j.doe+promo@gmail.com", variant="google").value == "jdoe@gmail.com"


def test_google_removes_inner_whitespace_meta_refuses_it():
    # Data Manager: "Trim leading, trailing and intermediate whitespace."
    assert n.email("john smith@gmail.com", google=True) == "johnsmith@gmail.com"
    assert n.email("john smith@gmail.com") is None


def test_gmail_address_with_nothing_before_plus_is_refused():
    assert n.email("+tag@gmail.com", google=True) is None


# -- phone ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "default_country", "expected"),
    [
        # Meta's example, Google's example (Data Manager), TikTok's example
        ("(650)555-1212", "US", "+16505551212"),
        ("(800)555-0100", "US", "+18005550100"),
        ("+12133734253", "US", "+12133734253"),
        # the trunk "0" written after the country code, in brackets or not
        ("+44 (0)20 7946 0958", "US", "+442079460958"),
        ("+44 020 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+33 (0)6 12 34 56 78", "US", "+33612345678"),
        # "00" and North America's "011" international prefixes
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("011 44 20 7946 0958", "US", "+442079460958"),
        ("+0044 20 7946 0958", "US", "+442079460958"),
        # national numbers get the default country's code, without their trunk prefix
        ("415.555.0100", "US", "+14155550100"),
        ("1 415 555 0100", "US", "+14155550100"),
        ("0151 23456789", "DE", "+4915123456789"),
        ("0412 345 678", "AU", "+61412345678"),
        ("612345678", "FR", "+33612345678"),
        ("8 912 345-67-89", "RU", "+79123456789"),
        ("06 1 234 5678", "HU", "+3612345678"),
        ("090-1234-5678", "JP", "+819012345678"),
        ("010-1234-5678", "KR", "+821012345678"),
        ("98765 43210", "IN", "+919876543210"),
        ("021 123 4567", "NZ", "+64211234567"),
        ("079 123 45 67", "CH", "+41791234567"),
        # Italy keeps its leading 0: it belongs to the number
        ("06 1234 5678", "IT", "+390612345678"),
        ("+39 06 1234 5678", "US", "+390612345678"),
        ("3912345678", "IT", "+393912345678"),
        # the calling code already there, without "+"
        ("14155550100", "US", "+14155550100"),
        ("4915123456789", "DE", "+4915123456789"),
        ("447911123456", "GB", "+447911123456"),
        ("33612345678", "FR", "+33612345678"),
        ("393123456789", "IT", "+393123456789"),
        # letters, symbols, extensions and non-ASCII digits
        ("Tel: +1 (415) 555-0100", "US", "+14155550100"),
        ("+1 415-555-0100 ext. 23", "US", "+14155550100"),
        ("415-555-0100 x123", "US", "+14155550100"),
        ("٠١٥١ ٢٣٤٥٦٧٨٩", "DE", "+4915123456789"),
        ("＋４４ ２０ ７９４６ ０９５８", "US", "+442079460958"),
        (4155550100, "US", "+14155550100"),
        ("020 7946 0958", "gb", "+442079460958"),
    ],
)
def test_phone_to_e164(raw, default_country, expected):
    assert n.phone(raw, default_country=default_country) == expected
    assert n.phone_digits(raw, default_country=default_country) == expected[1:]


@pytest.mark.parametrize(
    ("raw", "default_country"),
    [
        ("555-0100", "US"),  # too short for North America
        ("+1 015 555 0100", "US"),  # area codes never start with 0 or 1
        ("+1 415 155 0100", "US"),  # nor do exchanges
        ("+999 1234567", "US"),  # no such calling code
        ("+12345678901234567", "US"),  # longer than E.164 allows
        ("+44 20 79", "US"),  # too short for the UK
        ("call me", "US"),
        ("1-800-FLOWERS", "US"),  # letters are removed, not translated
        ("2023-01-15", "US"),
        ("192.168.1.1", "US"),
        ("+", "US"),
        ("0000000", "US"),
    ],
)
def test_phone_rejects_implausible_numbers(raw, default_country):
    assert n.phone(raw, default_country=default_country) is None
    assert n.phone_digits(raw, default_country=default_country) is None


def test_national_phone_without_usable_country_is_dropped():
    assert normalize("phone", "020 7946 0958", default_country="ZZ") == Normalized(
        None, "no_country_code"
    )
    assert normalize("phone", "020 7946 0958", default_country="AQ").reason == "no_country_code"
    # an international number needs no default country
    assert n.phone("+44 20 7946 0958", default_country="ZZ") == "+442079460958"


def test_phone_digits_for_meta_plus_for_google_and_tiktok():
    # Snapchat's documented example is the same digits-only format Meta uses.
    assert normalize("ph", "+44 844 412 4653", variant="meta").value == "448444124653"
    assert normalize("phone", "+44 844 412 4653", variant="google").value == "+448444124653"
    assert normalize("phone", "+44 844 412 4653", variant="tiktok").value == "+448444124653"


# -- names, city, state --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Zoë", "zoë"),
        ("Zoe\u0308", "zoë"),  # decomposed input hashes like the composed form
        ("José", "josé"),
        ("  JOSÉ ", "josé"),
        ("Mary-Ann", "maryann"),
        ("Mary Ann", "maryann"),
        ("O'Brien", "obrien"),
        ("Dr. Smith", "drsmith"),
        ("Jean-Luc 2nd", "jeanlucnd"),
        ("Straße", "straße"),
        ("Søren", "søren"),
        ("Ólafur", "ólafur"),
        ("Владимир", "владимир"),
        ("नेहा", "नेहा"),  # combining vowel signs are kept
        ("李", "李"),
    ],
)
def test_names_lowercase_letters_only(raw, expected):
    assert n.first_name(raw) == expected
    assert n.last_name(raw) == expected


def test_google_names_keep_inner_spaces():
    # Data Manager AddressInfo: "all lowercase, with no punctuation, no leading or trailing
    # whitespace"; Meta's Parameter Builder strips all whitespace.
    assert n.name("  Mary   Ann ", keep_spaces=True) == "mary ann"
    assert normalize("first_name", "Mary Ann", variant="google").value == "mary ann"
    assert normalize("fn", "Mary Ann", variant="meta").value == "maryann"


@pytest.mark.parametrize("raw", ["!!!", "123", "-", "(  )", "\u200b", "x" * 200])
def test_names_without_letters_are_dropped(raw):
    assert n.first_name(raw) is None
    assert normalize("ln", raw).reason == "invalid_name"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("New York", "newyork"),
        ("St. Louis", "stlouis"),
        ("Winston-Salem", "winstonsalem"),
        ("São Paulo", "sãopaulo"),
        ("Paris 15", "paris"),
        ("MÜNCHEN", "münchen"),
    ],
)
def test_city(raw, expected):
    assert n.city(raw) == expected


def test_city_without_letters_is_dropped():
    assert normalize("ct", "10115").reason == "invalid_city"


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("California", None, "ca"),
        ("california", "US", "ca"),
        ("CA", None, "ca"),
        ("N.Y.", None, "ny"),
        ("New York", "United States", "ny"),
        ("District of Columbia", None, "dc"),
        ("Washington, D.C.", "US", "dc"),
        ("Puerto Rico", "US", "pr"),
        ("Ontario", None, "on"),
        ("Québec", "CA", "qc"),
        ("British Columbia", "Canada", "bc"),
        ("Newfoundland and Labrador", None, "nl"),
        # outside the US: "lowercase with no punctuation, no special characters, no spaces"
        ("Bavaria", None, "bavaria"),
        ("Île-de-France", "FR", "îledefrance"),
        ("BY", "DE", "by"),
        ("Nordrhein-Westfalen", "DE", "nordrheinwestfalen"),
    ],
)
def test_state(raw, country, expected):
    assert n.state(raw, country=country) == expected


@pytest.mark.parametrize(
    ("raw", "country"),
    [("XX", "US"), ("Californa", "US"), ("ON", "US"), ("Texas", "CA"), ("!!", None)],
)
def test_unknown_state_is_dropped(raw, country):
    assert normalize("st", raw, country=country) == Normalized(None, "unknown_state")


def test_state_with_unknown_country_is_dropped():
    assert normalize("st", "Texas", country="Atlantis").reason == "unknown_country"


# -- zip -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("94107-1234", None, "94107"),
        ("94107-1234", "US", "94107"),
        ("94107 1234", "US", "94107"),
        ("94107", "usa", "94107"),
        (94107, None, "94107"),
        ("M1 1AE", "GB", "m11ae"),
        ("SW1A 1AA", None, "sw1a1aa"),
        ("75018", "FR", "75018"),
        ("00-950", "PL", "00950"),
        ("01310-100", "BR", "01310100"),
        ("K1A 0B1", "CA", "k1a0b1"),
        ("1012 AB", "NL", "1012ab"),
    ],
)
def test_zip_code(raw, country, expected):
    assert n.zip_code(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "country"),
    [("9410", "US"), ("ABCDE", "US"), ("941071", "US"), ("none", None), ("1", None)],
)
def test_invalid_zip_is_dropped(raw, country):
    assert normalize("zp", raw, country=country) == Normalized(None, "invalid_zip")


# -- country -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("us", "us"),
        ("US", "us"),
        ("USA", "us"),
        ("U.S.A.", "us"),
        ("United States", "us"),
        ("United States of America", "us"),
        ("gbr", "gb"),
        ("UK", "gb"),
        ("United Kingdom", "gb"),
        ("Great Britain", "gb"),
        ("England", "gb"),
        ("Deutschland", "de"),
        ("Germany", "de"),
        ("DEU", "de"),
        ("the Netherlands", "nl"),
        ("Holland", "nl"),
        ("Côte d'Ivoire", "ci"),
        ("Ivory Coast", "ci"),
        ("St. Lucia", "lc"),
        ("Saint Kitts and Nevis", "kn"),
        ("Türkiye", "tr"),
        ("Turkey", "tr"),
        ("South Korea", "kr"),
        ("Viet Nam", "vn"),
        ("Vietnam", "vn"),
        ("Czech Republic", "cz"),
        ("España", "es"),
        ("Brasil", "br"),
        ("El", "gr"),
    ],
)
def test_country(raw, expected):
    assert n.country(raw) == expected


@pytest.mark.parametrize("raw", ["Atlantis", "XX", "Korea", "ZZZ", "Europe", "123"])
def test_unknown_or_ambiguous_country_is_dropped(raw):
    assert normalize("country", raw) == Normalized(None, "unknown_country")


# -- date of birth -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1997-02-16", "19970216"),
        ("19970216", "19970216"),
        (19970216, "19970216"),
        ("02161997", "19970216"),  # eight digits that cannot start with a year
        ("16021997", "19970216"),
        ("1997/02/16", "19970216"),
        ("1997.2.16", "19970216"),
        ("2/16/1997", "19970216"),
        ("02-16-1997", "19970216"),
        ("16/2/1997", "19970216"),  # the first number cannot be a month
        ("16.02.1997", "19970216"),
        ("16 Feb 1997", "19970216"),
        ("February 16, 1997", "19970216"),
        ("16th of February 1997", "19970216"),
        ("1997-02-16T00:00:00Z", "19970216"),
        ("1997-02-16 13:45:00", "19970216"),
        (date(1997, 2, 16), "19970216"),
        (datetime(1997, 2, 16, 23, 59), "19970216"),
        ("1900-01-01", "19000101"),
        ("2026-12-03", "20261203"),
    ],
)
def test_date_of_birth(raw, expected):
    assert n.date_of_birth(raw, today=TODAY) == expected


def test_dates_with_slashes_follow_the_country():
    assert n.date_of_birth("05/06/1990", today=TODAY) == "19900506"
    assert n.date_of_birth("05/06/1990", month_first=False, today=TODAY) == "19900605"
    assert normalize("db", "05/06/1990", default_country="US", today=TODAY).value == "19900506"
    assert normalize("db", "05/06/1990", default_country="GB", today=TODAY).value == "19900605"
    # dots are day first everywhere
    assert n.date_of_birth("05.06.1990", today=TODAY) == "19900605"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("1997-02-30", "impossible_date"),
        ("2/30/1997", "impossible_date"),
        ("13/13/1997", "impossible_date"),
        ("1899-12-31", "date_out_of_range"),
        ("2026-12-04", "date_out_of_range"),
        ("2099-01-01", "date_out_of_range"),
        ("2/16/97", "unparseable_date"),  # a two-digit year is not guessed
        ("yesterday", "unparseable_date"),
        ("16 Smarch 1997", "unparseable_date"),
        ("1997", "unparseable_date"),
        ("1997-02", "unparseable_date"),
    ],
)
def test_bad_dates_are_dropped(raw, reason):
    assert normalize("date_of_birth", raw, today=TODAY) == Normalized(None, reason)


# -- gender, external id -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("F", "f"), ("female", "f"), ("Woman", "f"), ("M", "m"), ("MALE", "m"), ("man", "m")],
)
def test_gender(raw, expected):
    assert n.gender(raw) == expected


@pytest.mark.parametrize("raw", ["x", "n", "other", "fem", "unknown"])
def test_unknown_gender_is_dropped(raw):
    assert normalize("ge", raw) == Normalized(None, "unknown_gender")


def test_external_id_lowercased_without_whitespace():
    # Meta's Parameter Builder normalises external_id this way, so hashes match the browser's
    assert n.external_id("  User-ABC 123 ") == "user-abc123"
    assert n.external_id(98765) == "98765"
    assert normalize("external_id", "a\x00b").reason == "invalid_external_id"


# -- hashing and pre-hashed values ---------------------------------------------------------


def test_sha256_helpers():
    assert n.sha256_hex("john_smith@gmail.com") == SOME_HASH
    assert n.is_sha256_hex(SOME_HASH)
    assert n.is_sha256_hex(SOME_HASH.upper())
    assert n.is_sha256_hex(f"  {SOME_HASH} ")
    assert not n.is_sha256_hex(SOME_HASH[:-1])
    assert not n.is_sha256_hex(SOME_HASH[:-1] + "g")
    assert not n.is_sha256_hex(None)
    assert not n.is_sha256_hex(12345)
    assert n.hash_once(SOME_HASH.upper()) == SOME_HASH
    assert n.hash_once("john_smith@gmail.com") == SOME_HASH


ALL_FUNCTIONS = [
    n.email,
    n.phone,
    n.phone_digits,
    n.first_name,
    n.last_name,
    n.name,
    n.city,
    n.state,
    n.zip_code,
    n.country,
    n.date_of_birth,
    n.gender,
    n.external_id,
]


@pytest.mark.parametrize("function", ALL_FUNCTIONS)
def test_prehashed_value_passes_through_lowercased(function):
    assert function(SOME_HASH.upper()) == SOME_HASH
    assert function(f" {SOME_HASH} ") == SOME_HASH


@pytest.mark.parametrize("field", sorted(n.FIELDS))
@pytest.mark.parametrize("variant", sorted(n.VARIANTS))
def test_prehashed_value_passes_through_the_dispatcher(field, variant):
    assert normalize(field, SOME_HASH.upper(), variant=variant) == Normalized(SOME_HASH, None)


@pytest.mark.parametrize("function", ALL_FUNCTIONS)
@pytest.mark.parametrize(
    "garbage", [None, "", "   ", "\t\n", 12.5, [], {}, b"a@b.co", True, object(), "\ud800"]
)
def test_garbage_gives_none(function, garbage):
    assert function(garbage) is None


# -- the dispatcher ------------------------------------------------------------------------


def test_dispatcher_reasons():
    assert normalize("email", None) == Normalized(None, "empty")
    assert normalize("email", "   ") == Normalized(None, "empty")
    assert normalize("email", 42) == Normalized(None, "not_text")
    assert normalize("email", "x" * 2000) == Normalized(None, "too_long")
    assert normalize("ph", "hello") == Normalized(None, "invalid_phone")
    assert normalize("shoe_size", "42") == Normalized(None, "unknown_field")
    assert normalize(None, "42") == Normalized(None, "unknown_field")  # type: ignore[arg-type]
    assert normalize("em", "a@b.co", variant="bing") == Normalized(None, "unknown_variant")
    assert normalize("em", "a@b.co", variant=["meta"]).reason == "unknown_variant"  # type: ignore[arg-type]
    assert normalize("st", "Texas", country=7).reason == "unknown_country"  # type: ignore[arg-type]


def test_dispatcher_accepts_pipeline_and_meta_field_names():
    user_fields = {
        "email",
        "phone",
        "first_name",
        "last_name",
        "city",
        "state",
        "zip",
        "country",
        "date_of_birth",
        "gender",
        "external_id",
    }
    assert user_fields <= set(n.FIELDS)
    assert {"em", "ph", "fn", "ln", "ct", "st", "zp", "db", "ge"} <= set(n.FIELDS)


def test_dispatcher_never_raises_on_odd_options():
    assert normalize("ph", "020 7946 0958", default_country=None).reason == "no_country_code"  # type: ignore[arg-type]
    assert normalize("db", "2/16/1997", default_country=None, today=TODAY).value == "19970216"  # type: ignore[arg-type]


# -- properties ----------------------------------------------------------------------------

ANYTHING = st.one_of(
    st.none(),
    st.text(max_size=60),
    st.text(alphabet=string.printable, max_size=40),
    st.integers(),
    st.floats(allow_nan=True),
    st.binary(max_size=10),
    st.booleans(),
    st.dates(),
    st.lists(st.integers(), max_size=3),
)
PHONE_LIKE = st.text(alphabet="0123456789 +-().x", max_size=24)
DATE_LIKE = st.builds(
    "{}{}{}{}{}".format,
    st.integers(0, 3000),
    st.sampled_from(["-", "/", ".", " ", ""]),
    st.integers(0, 40),
    st.sampled_from(["-", "/", ".", " ", ""]),
    st.integers(0, 3000),
)
EMAIL_LIKE = st.builds(
    "{}@{}.{}".format,
    st.text(alphabet=string.ascii_letters + ".+_-", min_size=1, max_size=15),
    st.sampled_from(["gmail", "googlemail", "example", "Ex-ample"]),
    st.sampled_from(["com", "co.uk", "io"]),
)
FIELD_NAMES = st.sampled_from(sorted(n.FIELDS))
VARIANT_NAMES = st.sampled_from(sorted(n.VARIANTS))
COUNTRY_HINTS = st.sampled_from(["US", "GB", "DE", "FR", "IT", "JP", "BR", "IN", "RU", "ZZ"])


@settings(max_examples=300)
@given(
    field=FIELD_NAMES,
    value=st.one_of(ANYTHING, PHONE_LIKE, DATE_LIKE, EMAIL_LIKE),
    variant=VARIANT_NAMES,
    default_country=COUNTRY_HINTS,
    country=st.one_of(st.none(), COUNTRY_HINTS),
)
def test_normalize_never_raises_and_never_fails_internally(
    field, value, variant, default_country, country
):
    result = normalize(
        field,
        value,
        variant=variant,
        default_country=default_country,
        country=country,
        today=TODAY,
    )
    assert isinstance(result, Normalized)
    assert (result.value is None) != (result.reason is None)
    assert result.reason != "internal_error"
    if result.value is not None:
        assert result.value == result.value.strip()
        assert result.value


@settings(max_examples=300)
@given(
    field=FIELD_NAMES,
    value=st.one_of(st.text(max_size=60), PHONE_LIKE, DATE_LIKE, EMAIL_LIKE),
    variant=VARIANT_NAMES,
    default_country=COUNTRY_HINTS,
    country=st.one_of(st.none(), COUNTRY_HINTS),
)
def test_normalize_is_stable_under_a_second_application(
    field, value, variant, default_country, country
):
    options = {"variant": variant, "default_country": default_country, "country": country}
    once = normalize(field, value, today=TODAY, **options)
    if once.value is None:
        return
    again = once.value
    if n.FIELDS[field] == "phone" and variant == "meta" and not n.is_sha256_hex(again):
        # Meta's digits-only form is re-read as national digits of default_country; what
        # must hold is that the digits are a complete international number.
        again = "+" + again
    assert normalize(field, again, today=TODAY, **options) == once


@given(value=ANYTHING)
def test_every_function_never_raises(value):
    for function in ALL_FUNCTIONS:
        result = function(value)
        assert result is None or isinstance(result, str)


@given(raw=PHONE_LIKE, default_country=COUNTRY_HINTS)
def test_phone_output_is_e164(raw, default_country):
    result = n.phone(raw, default_country=default_country)
    if result is not None:
        assert result[0] == "+"
        assert result[1:].isdigit()
        assert 7 <= len(result) - 1 <= 15
        assert result[1] != "0"
        assert n.phone(result, default_country="ZZ") == result


@given(raw=EMAIL_LIKE)
def test_google_email_is_stable_and_lowercase(raw):
    once = n.email(raw, google=True)
    if once is not None:
        assert once == once.lower()
        assert n.email(once, google=True) == once


@given(day=st.dates(min_value=date(1900, 1, 1), max_value=TODAY))
def test_every_real_birth_date_round_trips(day):
    expected = day.strftime("%Y%m%d")
    assert n.date_of_birth(day, today=TODAY) == expected
    assert n.date_of_birth(day.isoformat(), today=TODAY) == expected
    assert n.date_of_birth(expected, today=TODAY) == expected
    assert n.date_of_birth(day.strftime("%d.%m.%Y"), today=TODAY) == expected
    assert n.date_of_birth(f"{day.month}/{day.day}/{day.year}", today=TODAY) == expected


# -- oracle: Meta's official Python SDK ----------------------------------------------------


@pytest.fixture(scope="module")
def meta_sdk():
    """The SDK's ``Normalize.normalize_field``, returning None where it raises."""
    module = pytest.importorskip("facebook_business.adobjects.serverside.normalize")

    def hashed(field: str, value: str) -> str | None:
        try:
            return module.Normalize.normalize_field(field, value)
        except (TypeError, ValueError):
            return None

    return hashed


def ours(field: str, value: str, country: str | None = None) -> str | None:
    """Our normalised value, hashed the way the SDK hashes."""
    result = normalize(field, value, variant="meta", country=country, today=TODAY)
    return None if result.value is None else n.hash_once(result.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("em", "John_Smith@gmail.com"),
        ("em", "  Someone@Example.COM  "),
        ("ph", "+1 (650) 555-1212"),
        ("ph", "16505551212"),
        ("ph", "+44 844 412 4653"),
        ("fn", "Mary"),
        ("fn", "Valéry"),
        ("ln", "정"),
        ("fn", "ZOË"),
        ("ct", "Paris"),
        ("ct", "New York"),
        ("ct", "St. Louis"),
        ("st", "CA"),
        ("st", "az"),
        ("zp", "94107-1234"),
        ("zp", "M1 1AE"),
        ("zp", "75018"),
        ("country", "US"),
        ("country", " gb "),
        ("ge", "f"),
        ("ge", "M"),
        ("db", "19970216"),
        ("em", SOME_HASH.upper()),
        ("ph", SOME_HASH),
    ],
)
def test_oracle_agrees_with_meta_sdk(meta_sdk, field, value):
    expected = meta_sdk(field, value)
    assert expected is not None
    assert ours(field, value) == expected


@pytest.mark.parametrize(
    ("field", "value", "country", "ours_normalised", "why"),
    [
        (
            "ph",
            "(650)555-1212",
            None,
            "16505551212",
            "Meta's docs require the country code and give exactly this example; the SDK "
            "adds none and hashes 6505551212.",
        ),
        (
            "ph",
            "+44 (0)20 7946 0958",
            None,
            "442079460958",
            "The bracketed trunk 0 is never dialled; the SDK keeps it (4402079460958).",
        ),
        (
            "fn",
            "Mary Ann",
            None,
            "maryann",
            "Meta's Parameter Builder strips whitespace from names; the SDK keeps the space.",
        ),
        (
            "ln",
            "O'Brien",
            None,
            "obrien",
            "Docs: 'Lowercase only with no punctuation'; the SDK keeps the apostrophe.",
        ),
        (
            "ct",
            "Coeur d'Alene",
            None,
            "coeurdalene",
            "Docs: city with no punctuation; the SDK only removes digits, dots, spaces, "
            "dashes and brackets.",
        ),
        (
            "st",
            "California",
            None,
            "ca",
            "Docs: 'Use the 2-character ANSI abbreviation code'; the SDK hashes 'california'.",
        ),
        (
            "zp",
            "00-950",
            "PL",
            "00950",
            "Docs: 'no spaces and no dash'; the SDK keeps only the part before the dash ('00'), "
            "which is right for a US ZIP+4 and wrong for a Polish code.",
        ),
        (
            "ge",
            "Female",
            None,
            "f",
            "Docs: 'gender in the form of an initial in lowercase'; the SDK hashes 'female'.",
        ),
        (
            "db",
            "2/16/1997",
            None,
            "19970216",
            "Docs give this input and expect 19970216; the SDK hashes '2/16/1997'.",
        ),
        (
            "db",
            "1997-02-16",
            None,
            "19970216",
            "Docs: YYYYMMDD; the SDK hashes the dashes.",
        ),
    ],
)
def test_oracle_differences_are_deliberate(meta_sdk, field, value, country, ours_normalised, why):
    sdk = meta_sdk(field, value)
    assert sdk is not None, why
    assert normalize(field, value, variant="meta", country=country, today=TODAY).value == (
        ours_normalised
    ), why
    assert ours(field, value, country) != sdk, why


def test_oracle_country_names_the_sdk_refuses(meta_sdk):
    # Docs: "Input: United States, Normalized format: us"; the SDK raises on anything but
    # an alpha-2 code.
    assert meta_sdk("country", "United States") is None
    assert ours("country", "United States") == (
        "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("em", "not-an-email"), ("em", "a@b"), ("ph", "call me"), ("country", "XX")],
)
def test_oracle_both_refuse_garbage(meta_sdk, field, value):
    assert meta_sdk(field, value) is None
    assert ours(field, value) is None
