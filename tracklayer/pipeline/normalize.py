"""Customer identifiers normalised the way ad platforms match them, before hashing.

One pure function per identifier. What every function promises:

- It takes any object (None, a number, garbage) and never raises.
- It returns the value normalised to the platform's documented rules, or ``None`` when the
  input cannot be made usable. ``None`` is never a guess: a phone without a country we can
  infer, a date we cannot read or a state that is not a state are dropped, not mangled.
- A value that already is a SHA-256 hex digest (64 hex characters) is taken as hashed by the
  sender and comes back lowercased and otherwise unchanged, so it is never hashed twice.

``normalize(field, value)`` is the one entry point the pipeline needs: it picks the rules of
one platform family (``variant``) and returns ``Normalized(value, reason)``, where ``reason``
is a short slug ("invalid_phone", "unparseable_date", ...) to count drops by.

Documents followed (a comment at each rule names the one it comes from):

- [meta-cip] Meta Conversions API, "Customer Information Parameters"
  (developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/
  customer-information-parameters), and its examples with expected hashes.
- [meta-cpb] Meta's own Parameter Builder library (github.com/facebook/capi-param-builder,
  piiUtil), which shows how Meta normalises names, cities and external ids itself.
- [google-dm] Google Data Manager API, "Format user data"
  (developers.google.com/data-manager/api/devguides/concepts/formatting) and the
  AddressInfo reference; [google-ec] Google Ads API enhanced conversions normalisation.
- [tiktok] TikTok Events API 2.0 user parameters (business-api.tiktok.com/portal/docs,
  id 1771100865818625): email trimmed and lowercased, phone in E.164 with "+".
- Calling codes are the ITU-T E.164 assignments; national (trunk) prefixes and national
  number lengths were taken from libphonenumber's metadata (fixed-line and mobile lengths).
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, NamedTuple

__all__ = [
    "FIELDS",
    "VARIANTS",
    "Normalized",
    "city",
    "country",
    "date_of_birth",
    "email",
    "external_id",
    "first_name",
    "gender",
    "hash_once",
    "is_sha256_hex",
    "last_name",
    "name",
    "normalize",
    "phone",
    "phone_digits",
    "sha256_hex",
    "state",
    "zip_code",
]


class Normalized(NamedTuple):
    """A normalised value, or ``None`` with the reason it was dropped."""

    value: str | None
    reason: str | None


# Platform families whose rules differ: Meta (also used for Pinterest, Snapchat, Reddit and
# the other "Meta-style" hashed fields), Google (Data Manager / enhanced conversions) and
# TikTok. Only email, phone and names differ between them.
VARIANTS = frozenset({"meta", "google", "tiktok"})

# Longest input looked at; anything longer is not an identifier.
_MAX_INPUT = 1024

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


# -- hashing -------------------------------------------------------------------------------


def sha256_hex(value: str) -> str:
    """SHA-256 of the UTF-8 bytes of ``value``, as 64 lowercase hex characters.

    Hashes whatever it is given (even a hash); use ``hash_once`` for identifiers.
    """
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def is_sha256_hex(value: object) -> bool:
    """Whether ``value`` is a string of exactly 64 hex characters (surrounding space ignored)."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value.strip()) is not None


def hash_once(value: str) -> str:
    """The SHA-256 hex of a normalised value, or the value itself if it already is one."""
    if is_sha256_hex(value):
        return value.strip().lower()
    return sha256_hex(value)


# -- the shared front door of every normaliser ----------------------------------------------

_Core = Callable[..., Normalized]


def _prepare(value: object, accept: tuple[type, ...]) -> Normalized:
    """Turn an accepted input type into stripped text, or say why it is not usable."""
    if value is None:
        return Normalized(None, "empty")
    if isinstance(value, bool):  # bool is an int; True is never an identifier
        return Normalized(None, "not_text")
    if isinstance(value, str):
        text = value
    elif int in accept and isinstance(value, int):
        if value.bit_length() > 4 * _MAX_INPUT:  # far past any id, and str() may refuse it
            return Normalized(None, "too_long")
        text = str(value)
    elif date in accept and isinstance(value, date):
        text = (value.date() if isinstance(value, datetime) else value).isoformat()
    else:
        return Normalized(None, "not_text")
    text = text.strip()
    if not text:
        return Normalized(None, "empty")
    if len(text) > _MAX_INPUT:
        return Normalized(None, "too_long")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not text any platform could hash
        return Normalized(None, "not_text")
    return Normalized(text, None)


def _field(*accept: type) -> Callable[[_Core], _Core]:
    """Wrap a rule so that it only ever sees clean text and never lets an exception out.

    Empty and wrongly typed input is refused before the rule runs, and an already hashed
    value is passed through lowercased.
    """

    def wrap(rule: _Core) -> _Core:
        @functools.wraps(rule)
        def run(value: object, **options: Any) -> Normalized:
            try:
                prepared = _prepare(value, accept)
                if prepared.value is None:
                    return prepared
                if is_sha256_hex(prepared.value):
                    return Normalized(prepared.value.lower(), None)
                result = rule(prepared.value, **options)
                if result.value is not None:
                    if len(result.value) > _MAX_INPUT:  # a case mapping grew it ("İ" → "i̇")
                        return Normalized(None, "too_long")
                    if is_sha256_hex(result.value):  # would pass for a sender's digest
                        return Normalized(None, "looks_hashed")
                return result
            except Exception:  # the promise is "never raises": a bug drops the value
                return Normalized(None, "internal_error")

        return run

    return wrap


def _letters(text: str, *, keep_spaces: bool = False) -> str:
    """Lowercase ``text`` and keep only letters (with their combining marks).

    Digits, punctuation, symbols and control characters go; single inner spaces stay only
    when asked. Letters of every script are kept, composed (NFC), so "Zoe" + U+0308 and
    "Zoë" give the same hash.
    """
    kept = []
    for char in unicodedata.normalize("NFC", text.lower()):
        if unicodedata.category(char)[0] in "LM":
            kept.append(char)
        elif keep_spaces and char.isspace():
            kept.append(" ")
    result = "".join(kept)
    if keep_spaces:
        result = " ".join(result.split())
    return unicodedata.normalize("NFC", result)


def _key(text: str) -> str:
    """Lookup key for a place name: ASCII letters and digits only, accents folded.

    "Saint-Martin", "St. Martin" and "st martin" share one key; a leading "the" is ignored.
    """
    folded = unicodedata.normalize("NFKD", text.casefold())
    words = "".join(c for c in folded if not unicodedata.combining(c)).split()
    if words and words[0] in ("st", "st."):
        words[0] = "saint"
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    return "".join(c for c in "".join(words) if c.isascii() and c.isalnum())


# -- email ---------------------------------------------------------------------------------

_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_LOCAL_FORBIDDEN = frozenset('()<>[]\\,;:"@')


# The same rules as the character loops below, for the common all-ASCII address: no space
# or control character anywhere, no forbidden character in the local part, and every domain
# label 1-63 letters, digits or inner hyphens.
_ASCII_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_LOCAL_FORBIDDEN = re.compile(r'[()<>\[\]\\,;:"@]')
_ASCII_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _valid_email(address: str) -> bool:
    """A conservative syntax check: one "@", a plausible local part and a dotted domain."""
    if len(address) > 254 or address.count("@") != 1:
        return False
    if address.isascii():
        return _valid_ascii_email(address)
    if any(c.isspace() or unicodedata.category(c)[0] == "C" for c in address):
        return False
    local, domain = address.split("@")
    if not local or len(local) > 64 or local[0] == "." or local[-1] == "." or ".." in local:
        return False
    if any(c in _LOCAL_FORBIDDEN for c in local):
        return False
    labels = domain.split(".")
    if len(labels) < 2 or len(labels[-1]) < 2 or labels[-1].isdigit():
        return False
    return all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c.isalnum() or c == "-" for c in label)
        for label in labels
    )


def _valid_ascii_email(address: str) -> bool:
    if _ASCII_SPACE_OR_CONTROL.search(address):
        return False
    local, domain = address.split("@")
    if not local or len(local) > 64 or local[0] == "." or local[-1] == "." or ".." in local:
        return False
    if _ASCII_LOCAL_FORBIDDEN.search(local):
        return False
    labels = domain.split(".")
    if len(labels) < 2 or len(labels[-1]) < 2 or labels[-1].isdigit():
        return False
    return all(_ASCII_LABEL.fullmatch(label) for label in labels)


def _gmail_canonical(address: str) -> str:
    """Google's rule for Gmail addresses: no dots and no "+suffix" in the local part.

    [google-dm] "If the email address has the gmail.com or googlemail.com domain: remove all
    periods (.) before the @ symbol; remove the plus sign (+) from the local part and all
    characters that follow it" (cloudy.sanfrancisco+shopping@gmail.com ->
    cloudysanfrancisco@gmail.com); other domains keep dots and plus signs
    (user.name+NYC@Example.com -> user.name+nyc@example.com). [google-ec] states only the
    dot rule; Gmail ignores both for delivery, so both rules name the same mailbox.
    """
    local, domain = address.split("@")
    if domain not in _GMAIL_DOMAINS:
        return address
    return local.split("+", 1)[0].replace(".", "") + "@" + domain


@_field(str)
def _email(text: str, *, google: bool = False) -> Normalized:
    # [meta-cip] "Trim any leading and trailing spaces. Convert all characters to lowercase."
    address = text.lower()
    if google:
        # [google-dm] "Trim leading, trailing and intermediate whitespace."
        address = "".join(address.split())
    if not _valid_email(address):
        return Normalized(None, "invalid_email")
    if google:
        address = _gmail_canonical(address)
        if address.startswith("@"):  # "+tag@gmail.com" has no mailbox left
            return Normalized(None, "invalid_email")
    return Normalized(address, None)


def email(value: object, *, google: bool = False) -> str | None:
    """Trimmed, lowercased email address that passes a syntax check, else None.

    ``google=True`` applies Google's Gmail rule (dots and "+suffix" removed from the local
    part of gmail.com / googlemail.com addresses) and drops inner whitespace.
    """
    return _email(value, google=google).value


# -- phone ---------------------------------------------------------------------------------

# "+1 415 555 0100 ext. 12": the extension is not part of the number.
_EXTENSION = re.compile(r"\s*(?:ext\.?|extension|x|#)\s*\d{1,6}$", re.IGNORECASE)
# "+44 (0)20 7946 0958": the bracketed national prefix is written but never dialled.
_BRACKETED_TRUNK = re.compile(r"\(\s*0\s*\)")
# E.164: at most 15 digits with the country code; the shortest numbers in use have 7.
_E164_MIN, _E164_MAX = 7, 15


_NOT_ASCII_DIGIT = re.compile(r"[^0-9]+")


def _ascii_digits(text: str) -> str:
    """Every decimal digit of ``text`` as ASCII ("١٢" and full-width digits included)."""
    if text.isascii():
        return _NOT_ASCII_DIGIT.sub("", text)
    return "".join(str(unicodedata.decimal(c)) for c in text if c.isdecimal())


def _split_calling_code(digits: str) -> tuple[str, str] | None:
    """Split international digits into (country calling code, national number).

    Calling codes are prefix-free, so the first 1-3 digits match at most one code.
    """
    for size in (1, 2, 3):
        if digits[:size] in _CALLING_CODES:
            return digits[:size], digits[size:]
    return None


def _e164(code: str, national: str) -> Normalized:
    """``+<code><national>`` if its length is plausible for that country, else None."""
    shortest, longest = _NATIONAL_LENGTHS.get(code, (4, _E164_MAX - len(code)))
    total = len(code) + len(national)
    if not (shortest <= len(national) <= longest and _E164_MIN <= total <= _E164_MAX):
        return Normalized(None, "invalid_phone")
    # Where "0" is the trunk prefix, no national number starts with it.
    if national.startswith("0") and code in _TRUNK_ZERO_CODES:
        return Normalized(None, "invalid_phone")
    # North American numbers: neither the area code nor the exchange starts with 0 or 1.
    if code == "1" and (national[0] in "01" or national[3] in "01"):
        return Normalized(None, "invalid_phone")
    return Normalized(f"+{code}{national}", None)


def _international(digits: str) -> Normalized:
    # [meta-cip] "Remove symbols, letters, and any leading zeros": "+0044..." is "+44...".
    split = _split_calling_code(digits.lstrip("0"))
    if split is None:
        return Normalized(None, "invalid_phone")
    code, national = split
    if national.startswith("0") and code in _TRUNK_ZERO_CODES:
        national = national[1:]  # "+44 020 ..." keeps the trunk "0" by mistake
    return _e164(code, national)


def _national(digits: str, plan: _Country) -> Normalized:
    """A number written without "+" or "00", read as ``plan``'s country.

    The trunk prefix is dropped ("020 7946 0958" in GB). A number that already starts
    with the calling code is taken as international when the country dials a trunk
    prefix (its national numbers would start with it) or when it is longer than any of
    that country's mobile numbers; otherwise it is national.
    """
    code, trunk = plan.calling_code or "", plan.trunk
    if trunk and digits.startswith(trunk) and plan.fits(len(digits) - len(trunk)):
        return _e164(code, digits[len(trunk) :])
    includes_code = trunk or len(digits) > plan.mobile_max or not plan.fits(len(digits))
    if digits.startswith(code) and plan.fits(len(digits) - len(code)) and includes_code:
        return _e164(code, digits[len(code) :])
    return _e164(code, digits)


@_field(str, int)
def _phone(text: str, *, default_country: str = "US") -> Normalized:
    # NFKC turns full-width "＋４４" into "+44"; other scripts' digits are read below.
    text = unicodedata.normalize("NFKC", text)
    text = _BRACKETED_TRUNK.sub("", _EXTENSION.sub("", text))
    digits = _ascii_digits(text)
    if not digits or len(digits) > 20:
        return Normalized(None, "invalid_phone")
    first_digit = next(i for i, c in enumerate(text) if c.isdecimal())
    if "+" in text[:first_digit]:
        return _international(digits)
    if digits.startswith("00"):  # the international prefix of most of the world
        return _international(digits[2:])
    plan = _COUNTRIES.get(default_country.upper()) if isinstance(default_country, str) else None
    if plan is None or plan.calling_code is None:
        return Normalized(None, "no_country_code")
    if plan.calling_code == "1" and digits.startswith("011"):  # North America dials 011
        return _international(digits[3:])
    return _national(digits, plan)


def phone(value: object, *, default_country: str = "US") -> str | None:
    """E.164 with the leading "+", e.g. "+14155550100", else None.

    Letters, symbols, spaces and an extension are removed; "+" or "00" marks an
    international number; a national number gets ``default_country``'s calling code and
    loses its trunk prefix. [google-dm] "Use the E.164 format. Include the plus sign (+)
    and the country code"; [tiktok] the same; [meta-cip] "Phone numbers must include a
    country code ... even if all of your data is from the same country".
    """
    return _phone(value, default_country=default_country).value


def _without_plus(result: Normalized) -> Normalized:
    if result.value is not None and result.value.startswith("+"):
        return Normalized(result.value[1:], None)
    return result


def phone_digits(value: object, *, default_country: str = "US") -> str | None:
    """The E.164 number as digits only, with the country code: what Meta's ``ph`` wants.

    [meta-cip] example: US "(650)555-1212" -> "16505551212".
    """
    return _without_plus(_phone(value, default_country=default_country)).value


# -- names, city, state --------------------------------------------------------------------

_MAX_NAME = 128


@_field(str)
def _name(text: str, *, keep_spaces: bool = False) -> Normalized:
    # [meta-cip] "Lowercase only with no punctuation. If using special characters, the text
    # must be encoded in UTF-8" (Valéry -> valéry, 정 kept). [meta-cpb] getNormalizedName
    # also strips all whitespace ("Mary Ann" -> "maryann"). [google-dm] given/family name:
    # "all lowercase, with no punctuation, no leading or trailing whitespace", so Google
    # keeps inner spaces. Digits are no part of a name (Google's GA4 user-provided data
    # guide, which follows the Ads rules, removes digits and symbols from names).
    result = _letters(text, keep_spaces=keep_spaces)
    if not result or len(result) > _MAX_NAME:
        return Normalized(None, "invalid_name")
    return Normalized(result, None)


def name(value: object, *, keep_spaces: bool = False) -> str | None:
    """A first or last name: lowercase letters of any script, no punctuation or digits.

    Whitespace is removed (Meta's rule); ``keep_spaces=True`` keeps single inner spaces
    (Google's rule).
    """
    return _name(value, keep_spaces=keep_spaces).value


def first_name(value: object, *, keep_spaces: bool = False) -> str | None:
    """First name; see ``name``."""
    return name(value, keep_spaces=keep_spaces)


def last_name(value: object, *, keep_spaces: bool = False) -> str | None:
    """Last name; see ``name``."""
    return name(value, keep_spaces=keep_spaces)


@_field(str)
def _city(text: str, *, keep_spaces: bool = False) -> Normalized:
    # [meta-cip] "Lowercase only with no punctuation, no special characters, and no spaces"
    # (examples paris, london, newyork). Accented letters are kept in UTF-8, as for names.
    # GA4 user-provided data keeps inner spaces ("san francisco": remove digits and symbols,
    # lowercase, trim), so the google variant does too.
    result = _letters(text, keep_spaces=keep_spaces)
    if not result or len(result) > _MAX_NAME:
        return Normalized(None, "invalid_city")
    return Normalized(result, None)


def city(value: object) -> str | None:
    """City as lowercase letters only: "New York" -> "newyork", "São Paulo" -> "sãopaulo"."""
    return _city(value).value


def _home_country(country: object) -> str | None:
    """The alpha-2 of the person's own country: "" when none is given, None if unreadable."""
    if country is None or (isinstance(country, str) and not country.strip()):
        return ""
    return _country_code(country) if isinstance(country, str) else None


@_field(str)
def _state(text: str, *, country: str | None = None) -> Normalized:
    region = _home_country(country)
    if region is None:
        return Normalized(None, "unknown_country")
    known = _STATE_CODES.get(region, {})
    letters = _letters(text)
    if len(letters) == 2 and letters.isascii():
        if known and letters not in known.values():
            return Normalized(None, "unknown_state")
        return Normalized(letters, None)
    if region in ("", "us", "ca"):
        # [meta-cip] "Use the 2-character ANSI abbreviation code in lowercase": full US
        # state and Canadian province names become their codes.
        code = (known or _ANY_STATE_CODE).get(_key(letters))
        if code is not None:
            return Normalized(code, None)
        if region:
            return Normalized(None, "unknown_state")
    # [meta-cip] "Normalize states outside the U.S. in lowercase with no punctuation, no
    # special characters, and no spaces."
    if not letters or len(letters) > _MAX_NAME:
        return Normalized(None, "unknown_state")
    return Normalized(letters, None)


def state(value: object, *, country: str | None = None) -> str | None:
    """State or region: a US/Canadian 2-letter code, else the region in lowercase letters.

    "California" -> "ca", "Ontario" -> "on", "CA" -> "ca". With ``country`` "US" or "CA"
    the value must be one of that country's codes or names. Without a country, an unknown
    name is kept as letters, which is Meta's rule for regions outside the US.
    """
    return _state(value, country=country).value


# -- zip / postal code ---------------------------------------------------------------------

_US_ZIP = re.compile(r"(\d{5})(?:\d{4})?")
_ZIP_PLUS_FOUR = re.compile(r"\d{5}-\d{4}")


@_field(str, int)
def _zip(text: str, *, country: str | None = None) -> Normalized:
    region = _home_country(country)
    if region is None:
        return Normalized(None, "unknown_country")
    lowered = text.lower()
    if not region and _ZIP_PLUS_FOUR.fullmatch(lowered):
        region = "us"  # only the US writes ZIP+4
    # [meta-cip] "Use lowercase with no spaces and no dash" (UK "M1 1AE" -> "m11ae": the
    # whole postcode, as in Meta's example, although the text speaks of "area, district
    # and sector"). Other punctuation goes too.
    compact = "".join(c for c in lowered if c.isascii() and c.isalnum())
    if region == "us":
        # [meta-cip] "Use only the first 5 digits for U.S. zip codes": 94107-1234 -> 94107.
        match = _US_ZIP.fullmatch(compact)
        return Normalized(match.group(1), None) if match else Normalized(None, "invalid_zip")
    if not 2 <= len(compact) <= 10 or not any(c.isdigit() for c in compact):
        return Normalized(None, "invalid_zip")
    return Normalized(compact, None)


def zip_code(value: object, country: str | None = None) -> str | None:
    """Postal code in lowercase without spaces or dashes; US codes cut to 5 digits.

    "94107-1234" -> "94107", "M1 1AE" -> "m11ae", "00-950" (PL) -> "00950". ``country``
    (any form ``country()`` reads) makes US codes strict; without it a ZIP+4 is still
    recognised.
    """
    return _zip(value, country=country).value


# -- country -------------------------------------------------------------------------------


def _country_code(text: str) -> str | None:
    """ISO 3166-1 alpha-2 (lowercase) for an alpha-2, alpha-3 or English/native name."""
    code = "".join(c for c in text if c.isalpha()).upper()  # "U.S.A." is "USA"
    if code.isascii() and len(code) == 2 and code in _COUNTRIES:
        return code.lower()
    if code.isascii() and len(code) == 3 and code in _ALPHA3:
        return _ALPHA3[code].lower()
    found = _COUNTRY_KEYS.get(_key(text))
    return found.lower() if found else None


@_field(str)
def _country(text: str) -> Normalized:
    # [meta-cip] "Use the lowercase, 2-letter country codes in ISO 3166-1 alpha-2"
    # (United States -> us).
    code = _country_code(text)
    return Normalized(code, None) if code else Normalized(None, "unknown_country")


def country(value: object) -> str | None:
    """ISO 3166-1 alpha-2, lowercase, from a code ("US", "USA") or a name ("United States").

    Common variants are understood ("UK", "Great Britain", "Holland", "Deutschland"); an
    ambiguous or unknown name gives None.
    """
    return _country(value).value


# -- date of birth -------------------------------------------------------------------------

_YMD = re.compile(r"(\d{4})([-/. ])(\d{1,2})\2(\d{1,2})(?:[t ]\S*)?", re.IGNORECASE)
_DMY = re.compile(r"(\d{1,2})([-/. ])(\d{1,2})\2(\d{4})")
_COMPACT_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_DATE_TOKEN = re.compile(r"\d+|[^\W\d_]+")
_DATE_FILLER = frozenset({"st", "nd", "rd", "th", "of"})
_MONTHS = {
    month: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for month in names
}
# Countries that write the month first in "2/16/1997"; everyone else is read day first
# (Canada writes both orders and is left day first).
_MONTH_FIRST = frozenset({"US", "PR", "GU", "VI", "AS", "MP", "UM", "PH", "FM", "MH", "PW"})


def _day_month(first: int, second: int, *, month_first: bool) -> tuple[int, int]:
    """(day, month) from two numbers in the writer's order, swapped if only that fits."""
    day, month = (second, first) if month_first else (first, second)
    if month > 12 >= day:
        day, month = month, day
    return day, month


def _worded_date(text: str) -> tuple[int, int, int] | None:
    """(year, month, day) from "16 February 1997", "Feb 16th, 1997" and the like."""
    tokens = _DATE_TOKEN.findall(text.casefold())
    # isdecimal, not isdigit: "²" and "①" are digits that int() refuses
    words = [t for t in tokens if not t.isdecimal() and t not in _DATE_FILLER]
    numbers = [t for t in tokens if t.isdecimal()]
    if len(words) != 1 or words[0] not in _MONTHS or len(numbers) != 2:
        return None
    years = [int(n) for n in numbers if len(n) == 4]
    days = [int(n) for n in numbers if len(n) <= 2]
    if len(years) != 1 or len(days) != 1:
        return None
    return years[0], _MONTHS[words[0]], days[0]


def _read_date(text: str, *, month_first: bool) -> tuple[int, int, int] | None:
    """(year, month, day) as written, without checking that the date exists."""
    if match := _COMPACT_DATE.fullmatch(text):
        if int(match[1]) >= 1900:  # YYYYMMDD, Meta's own format
            return int(match[1]), int(match[2]), int(match[3])
        # "16021997" or "02161997": day and month in the writer's order, then the year
        day, month = _day_month(int(text[:2]), int(text[2:4]), month_first=month_first)
        return int(text[4:]), month, day
    if match := _YMD.fullmatch(text):
        return int(match[1]), int(match[3]), int(match[4])
    if match := _DMY.fullmatch(text):
        # Dots ("16.02.1997") are always day first; slashes and dashes follow the country.
        order = month_first and match[2] != "."
        day, month = _day_month(int(match[1]), int(match[3]), month_first=order)
        return int(match[4]), month, day
    return _worded_date(text)


@_field(str, int, date)
def _date_of_birth(text: str, *, month_first: bool = True, today: date | None = None) -> Normalized:
    # [meta-cip] "YYYYMMDD ... with or without punctuation. Year: 1900 to current year.
    # Month: 01 to 12. Date: 01 to 31." (2/16/1997 -> 19970216). A two-digit year is
    # refused rather than guessed.
    parts = _read_date(text, month_first=month_first)
    if parts is None:
        return Normalized(None, "unparseable_date")
    year, month, day = parts
    try:
        born = date(year, month, day)
    except ValueError:
        return Normalized(None, "impossible_date")
    if year < 1900 or born > (today or date.today()):
        return Normalized(None, "date_out_of_range")
    return Normalized(born.strftime("%Y%m%d"), None)


def date_of_birth(
    value: object, *, month_first: bool = True, today: date | None = None
) -> str | None:
    """Date of birth as "YYYYMMDD" (Meta's ``db``), else None.

    Reads "1997-02-16", "19970216", "1997/02/16", "2/16/1997" (month first unless
    ``month_first=False`` or the first number exceeds 12), "16.02.1997", "16 Feb 1997" and
    ``date``/``datetime`` objects. Impossible dates, years before 1900 and dates after
    ``today`` (default: the system date) give None.
    """
    return _date_of_birth(value, month_first=month_first, today=today).value


# -- gender, external id -------------------------------------------------------------------

_GENDERS = {"f": "f", "female": "f", "woman": "f", "m": "m", "male": "m", "man": "m"}


@_field(str)
def _gender(text: str) -> Normalized:
    # [meta-cip] "We accept gender in the form of an initial in lowercase": f or m.
    code = _GENDERS.get(_letters(text))
    return Normalized(code, None) if code else Normalized(None, "unknown_gender")


def gender(value: object) -> str | None:
    """The initial Meta wants, "f" or "m", from f/m/female/male/woman/man in any case."""
    return _gender(value).value


@_field(str, int)
def _external_id(text: str) -> Normalized:
    # [meta-cip] external_id: "Hashing recommended" and it must be "in the same format" on
    # every channel. [meta-cpb] getNormalizedExternalID lowercases and removes whitespace,
    # so ids hashed here match those Meta's own libraries hash in the browser.
    result = "".join(text.lower().split())
    if result.isascii():
        if _ASCII_CONTROL.search(result):
            return Normalized(None, "invalid_external_id")
    elif any(unicodedata.category(c)[0] == "C" for c in result):
        return Normalized(None, "invalid_external_id")
    return Normalized(result, None)


def external_id(value: object) -> str | None:
    """The advertiser's user id, lowercased with whitespace removed (Meta's own rule)."""
    return _external_id(value).value


# -- dispatcher ----------------------------------------------------------------------------

# Field names the pipeline uses (model.User) and Meta's user_data keys.
FIELDS = {
    "email": "email",
    "em": "email",
    "phone": "phone",
    "ph": "phone",
    "first_name": "first_name",
    "fn": "first_name",
    "last_name": "last_name",
    "ln": "last_name",
    "city": "city",
    "ct": "city",
    "state": "state",
    "st": "state",
    "zip": "zip",
    "zp": "zip",
    "zip_code": "zip",
    "postal_code": "zip",
    "country": "country",
    "date_of_birth": "date_of_birth",
    "db": "date_of_birth",
    "dob": "date_of_birth",
    "gender": "gender",
    "ge": "gender",
    "external_id": "external_id",
}


def normalize(
    field: str,
    value: object,
    *,
    default_country: str = "US",
    variant: str = "meta",
    country: str | None = None,
    today: date | None = None,
) -> Normalized:
    """Normalise ``value`` as identifier ``field`` for one platform family.

    ``variant`` is "meta" (phone as digits, names without spaces), "google" (Gmail rule,
    phone with "+", names keep inner spaces) or "tiktok" (phone with "+"). ``default_country``
    is assumed for phone numbers written without a country code and decides whether
    "2/3/1990" is read month first; ``country`` is the person's own country, when known,
    for state and zip. Never raises: an unknown field or variant is a reason too.
    """
    kind = FIELDS.get(field) if isinstance(field, str) else None
    if kind is None:
        return Normalized(None, "unknown_field")
    if not isinstance(variant, str) or variant not in VARIANTS:
        return Normalized(None, "unknown_variant")
    google = variant == "google"
    if kind == "email":
        return _email(value, google=google)
    if kind == "phone":
        result = _phone(value, default_country=default_country)
        return _without_plus(result) if variant == "meta" else result
    if kind in ("first_name", "last_name"):
        return _name(value, keep_spaces=google)
    if kind == "city":
        return _city(value, keep_spaces=google)
    if kind == "state":
        return _state(value, country=country)
    if kind == "zip":
        return _zip(value, country=country)
    if kind == "country":
        return _country(value)
    if kind == "date_of_birth":
        month_first = isinstance(default_country, str) and default_country.upper() in _MONTH_FIRST
        return _date_of_birth(value, month_first=month_first, today=today)
    if kind == "gender":
        return _gender(value)
    return _external_id(value)


# -- data ----------------------------------------------------------------------------------


class _Country(NamedTuple):
    alpha2: str
    alpha3: str
    calling_code: str | None
    trunk: str | None  # national (trunk) prefix dialled before national numbers
    national_min: int  # shortest and longest national numbers (fixed-line and mobile)
    national_max: int
    mobile_max: int
    names: tuple[str, ...]

    def fits(self, length: int) -> bool:
        return self.national_min <= length <= self.national_max


# ISO 3166-1 (alpha-2, alpha-3, English names) with, per country, the E.164 calling code,
# the national trunk prefix, the range of national number lengths and the longest mobile
# number ("-": none). Columns: a2 a3 code trunk min max mobile names ("|"-separated).
# Belarus's trunk is written "80" (people dial "8 0", libphonenumber parses "0|80?").
_COUNTRY_TABLE = """
AD AND 376  -  6  9  9  Andorra
AE ARE 971  0  8  9  9  United Arab Emirates
AF AFG  93  0  9  9  9  Afghanistan
AG ATG   1  1 10 10 10  Antigua and Barbuda
AI AIA   1  1 10 10 10  Anguilla
AL ALB 355  0  8  9  9  Albania
AM ARM 374  0  8  8  8  Armenia
AO AGO 244  -  9  9  9  Angola
AQ ATA   -  -  -  -  -  Antarctica
AR ARG  54  0 10 11 11  Argentina
AS ASM   1  1 10 10 10  American Samoa
AT AUT  43  0  4 13 13  Austria
AU AUS  61  0  9  9  9  Australia
AW ABW 297  -  7  7  7  Aruba
AX ALA 358  0  6 10 10  Åland Islands
AZ AZE 994  0  9  9  9  Azerbaijan
BA BIH 387  0  8  9  9  Bosnia and Herzegovina
BB BRB   1  1 10 10 10  Barbados
BD BGD 880  0  6 10 10  Bangladesh
BE BEL  32  0  8  9  9  Belgium
BF BFA 226  -  8  8  8  Burkina Faso
BG BGR 359  0  6  9  9  Bulgaria
BH BHR 973  -  8  8  8  Bahrain
BI BDI 257  -  8  8  8  Burundi
BJ BEN 229  - 10 10 10  Benin
BL BLM 590  0  9  9  9  Saint Barthélemy
BM BMU   1  1 10 10 10  Bermuda
BN BRN 673  -  7  7  7  Brunei Darussalam
BO BOL 591  0  8  8  8  Bolivia|Bolivia, Plurinational State of
BQ BES 599  -  7  7  7  Bonaire, Sint Eustatius and Saba
BR BRA  55  0 10 11 11  Brazil
BS BHS   1  1 10 10 10  Bahamas
BT BTN 975  -  7  8  8  Bhutan
BV BVT   -  -  -  -  -  Bouvet Island
BW BWA 267  -  7  8  8  Botswana
BY BLR 375 80  9  9  9  Belarus
BZ BLZ 501  -  7  7  7  Belize
CA CAN   1  1 10 10 10  Canada
CC CCK  61  0  9  9  9  Cocos (Keeling) Islands
CD COD 243  0  7 10  9  Congo, The Democratic Republic of the
CF CAF 236  -  8  8  8  Central African Republic
CG COG 242  -  9  9  9  Congo
CH CHE  41  0  9  9  9  Switzerland
CI CIV 225  - 10 10 10  Côte d'Ivoire
CK COK 682  -  5  5  5  Cook Islands
CL CHL  56  -  9  9  9  Chile
CM CMR 237  -  9  9  9  Cameroon
CN CHN  86  0  7 11 11  China
CO COL  57  0  8 10 10  Colombia
CR CRI 506  -  8  8  8  Costa Rica
CU CUB  53  0  6 10  8  Cuba
CV CPV 238  -  7  7  7  Cabo Verde
CW CUW 599  -  7  8  8  Curaçao
CX CXR  61  0  9  9  9  Christmas Island
CY CYP 357  -  8  8  8  Cyprus
CZ CZE 420  -  9  9  9  Czechia
DE DEU  49  0  5 15 11  Germany
DJ DJI 253  -  8  8  8  Djibouti
DK DNK  45  -  8  8  8  Denmark
DM DMA   1  1 10 10 10  Dominica
DO DOM   1  1 10 10 10  Dominican Republic
DZ DZA 213  0  8  9  9  Algeria
EC ECU 593  0  8  9  9  Ecuador
EE EST 372  -  7  8  8  Estonia
EG EGY  20  0  8 10 10  Egypt
EH ESH 212  0  9  9  9  Western Sahara
ER ERI 291  0  7  7  7  Eritrea
ES ESP  34  -  9  9  9  Spain
ET ETH 251  0  9  9  9  Ethiopia
FI FIN 358  0  5 10 10  Finland
FJ FJI 679  -  7  7  7  Fiji
FK FLK 500  -  5  5  5  Falkland Islands (Malvinas)
FM FSM 691  -  7  7  7  Micronesia, Federated States of
FO FRO 298  -  6  6  6  Faroe Islands
FR FRA  33  0  9  9  9  France
GA GAB 241  -  7  8  8  Gabon
GB GBR  44  0  9 10 10  United Kingdom
GD GRD   1  1 10 10 10  Grenada
GE GEO 995  0  9  9  9  Georgia
GF GUF 594  0  9  9  9  French Guiana
GG GGY  44  0 10 10 10  Guernsey
GH GHA 233  0  9  9  9  Ghana
GI GIB 350  -  8  8  8  Gibraltar
GL GRL 299  -  6  6  6  Greenland
GM GMB 220  -  7  9  9  Gambia
GN GIN 224  -  8  9  9  Guinea
GP GLP 590  0  9  9  9  Guadeloupe
GQ GNQ 240  -  9  9  9  Equatorial Guinea
GR GRC  30  - 10 10 10  Greece
GS SGS   -  -  -  -  -  South Georgia and the South Sandwich Islands
GT GTM 502  -  8  8  8  Guatemala
GU GUM   1  1 10 10 10  Guam
GW GNB 245  -  9  9  9  Guinea-Bissau
GY GUY 592  -  7  7  7  Guyana
HK HKG 852  -  8  8  8  Hong Kong
HM HMD   -  -  -  -  -  Heard Island and McDonald Islands
HN HND 504  -  8  8  8  Honduras
HR HRV 385  0  8  9  9  Croatia
HT HTI 509  -  8  8  8  Haiti
HU HUN  36 06  8  9  9  Hungary
ID IDN  62  0  7 12 12  Indonesia
IE IRL 353  0  7 10  9  Ireland
IL ISR 972  0  8 12  9  Israel
IM IMN  44  0 10 10 10  Isle of Man
IN IND  91  0 10 10 10  India
IO IOT 246  -  7  7  7  British Indian Ocean Territory
IQ IRQ 964  0  8 10 10  Iraq
IR IRN  98  0  6 10 10  Iran|Iran, Islamic Republic of
IS ISL 354  -  7  9  9  Iceland
IT ITA  39  -  6 12 10  Italy
JE JEY  44  0 10 10 10  Jersey
JM JAM   1  1 10 10 10  Jamaica
JO JOR 962  0  8  9  9  Jordan
JP JPN  81  0  9 10 10  Japan
KE KEN 254  0  7  9  9  Kenya
KG KGZ 996  0  9  9  9  Kyrgyzstan
KH KHM 855  0  8  9  9  Cambodia
KI KIR 686  0  5  8  8  Kiribati
KM COM 269  -  7  7  7  Comoros
KN KNA   1  1 10 10 10  Saint Kitts and Nevis
KP PRK 850  0  8 10 10  North Korea|Korea, Democratic People's Republic of
KR KOR  82  0  5 10 10  South Korea|Korea, Republic of
KW KWT 965  -  8  8  8  Kuwait
KY CYM   1  1 10 10 10  Cayman Islands
KZ KAZ   7  8 10 10 10  Kazakhstan
LA LAO 856  0  8 10 10  Laos|Lao People's Democratic Republic
LB LBN 961  0  7  8  8  Lebanon
LC LCA   1  1 10 10 10  Saint Lucia
LI LIE 423  0  7  9  9  Liechtenstein
LK LKA  94  0  9  9  9  Sri Lanka
LR LBR 231  0  7  9  9  Liberia
LS LSO 266  -  8  8  8  Lesotho
LT LTU 370  0  8  8  8  Lithuania
LU LUX 352  -  4 11  9  Luxembourg
LV LVA 371  -  8  8  8  Latvia
LY LBY 218  0  9  9  9  Libya
MA MAR 212  0  9  9  9  Morocco
MC MCO 377  0  8  9  9  Monaco
MD MDA 373  0  8  8  8  Moldova|Moldova, Republic of
ME MNE 382  0  8  8  8  Montenegro
MF MAF 590  0  9  9  9  Saint Martin (French part)
MG MDG 261  0  9  9  9  Madagascar
MH MHL 692  1  7  7  7  Marshall Islands
MK MKD 389  0  8  8  8  North Macedonia
ML MLI 223  -  8  8  8  Mali
MM MMR  95  0  6 10 10  Myanmar
MN MNG 976  0  8 10  8  Mongolia
MO MAC 853  -  8  8  8  Macao
MP MNP   1  1 10 10 10  Northern Mariana Islands
MQ MTQ 596  0  9  9  9  Martinique
MR MRT 222  -  8  8  8  Mauritania
MS MSR   1  1 10 10 10  Montserrat
MT MLT 356  -  8  8  8  Malta
MU MUS 230  -  7  8  8  Mauritius
MV MDV 960  -  7  7  7  Maldives
MW MWI 265  0  7  9  9  Malawi
MX MEX  52  - 10 10 10  Mexico
MY MYS  60  0  8 10 10  Malaysia
MZ MOZ 258  -  8  9  9  Mozambique
NA NAM 264  0  8  9  9  Namibia
NC NCL 687  -  6  6  6  New Caledonia
NE NER 227  -  8  8  8  Niger
NF NFK 672  -  6  6  6  Norfolk Island
NG NGA 234  0 10 10 10  Nigeria
NI NIC 505  -  8  8  8  Nicaragua
NL NLD  31  0  9 11 11  Netherlands
NO NOR  47  -  8  8  8  Norway
NP NPL 977  0  8 10 10  Nepal
NR NRU 674  -  7  7  7  Nauru
NU NIU 683  -  4  7  7  Niue
NZ NZL  64  0  8 10 10  New Zealand
OM OMN 968  -  8  8  8  Oman
PA PAN 507  -  7  8  8  Panama
PE PER  51  0  8  9  9  Peru
PF PYF 689  -  8  8  8  French Polynesia
PG PNG 675  -  7  8  8  Papua New Guinea
PH PHL  63  0  6 10 10  Philippines
PK PAK  92  0  9 10 10  Pakistan
PL POL  48  -  7  9  9  Poland
PM SPM 508  0  6  9  9  Saint Pierre and Miquelon
PN PCN   -  -  -  -  -  Pitcairn
PR PRI   1  1 10 10 10  Puerto Rico
PS PSE 970  0  8  9  9  Palestine, State of
PT PRT 351  -  9  9  9  Portugal
PW PLW 680  -  7  7  7  Palau
PY PRY 595  0  7  9  9  Paraguay
QA QAT 974  -  8  8  8  Qatar
RE REU 262  0  9  9  9  Réunion
RO ROU  40  0  6  9  9  Romania
RS SRB 381  0  7 12 10  Serbia
RU RUS   7  8 10 10 10  Russian Federation
RW RWA 250  0  8  9  9  Rwanda
SA SAU 966  0  9  9  9  Saudi Arabia
SB SLB 677  -  5  7  7  Solomon Islands
SC SYC 248  -  7  7  7  Seychelles
SD SDN 249  0  9  9  9  Sudan
SE SWE  46  0  7  9  9  Sweden
SG SGP  65  -  8  8  8  Singapore
SH SHN 290  -  4  5  5  Saint Helena, Ascension and Tristan da Cunha
SI SVN 386  0  8  8  8  Slovenia
SJ SJM  47  -  8  8  8  Svalbard and Jan Mayen
SK SVK 421  0  6  9  9  Slovakia
SL SLE 232  0  8  8  8  Sierra Leone
SM SMR 378  -  8 10  8  San Marino
SN SEN 221  -  9  9  9  Senegal
SO SOM 252  0  6  9  9  Somalia
SR SUR 597  -  6  7  7  Suriname
SS SSD 211  0  9  9  9  South Sudan
ST STP 239  -  7  7  7  Sao Tome and Principe
SV SLV 503  -  8  8  8  El Salvador
SX SXM   1  1 10 10 10  Sint Maarten (Dutch part)
SY SYR 963  0  8  9  9  Syria|Syrian Arab Republic
SZ SWZ 268  -  8  8  8  Eswatini
TC TCA   1  1 10 10 10  Turks and Caicos Islands
TD TCD 235  -  8  8  8  Chad
TF ATF   -  -  -  -  -  French Southern Territories
TG TGO 228  -  8  8  8  Togo
TH THA  66  0  8  9  9  Thailand
TJ TJK 992  -  9  9  9  Tajikistan
TK TKL 690  -  4  7  7  Tokelau
TL TLS 670  -  7  8  8  Timor-Leste
TM TKM 993  8  8  8  8  Turkmenistan
TN TUN 216  -  8  8  8  Tunisia
TO TON 676  -  5  7  7  Tonga
TR TUR  90  0 10 10 10  Türkiye
TT TTO   1  1 10 10 10  Trinidad and Tobago
TV TUV 688  -  5  7  7  Tuvalu
TW TWN 886  0  8  9  9  Taiwan|Taiwan, Province of China
TZ TZA 255  0  9  9  9  Tanzania|Tanzania, United Republic of
UA UKR 380  0  9  9  9  Ukraine
UG UGA 256  0  9  9  9  Uganda
UM UMI   -  -  -  -  -  United States Minor Outlying Islands
US USA   1  1 10 10 10  United States
UY URY 598  0  8  8  8  Uruguay
UZ UZB 998  -  9  9  9  Uzbekistan
VA VAT  39  -  6 11 10  Holy See (Vatican City State)
VC VCT   1  1 10 10 10  Saint Vincent and the Grenadines
VE VEN  58  0 10 10 10  Venezuela|Venezuela, Bolivarian Republic of
VG VGB   1  1 10 10 10  Virgin Islands, British
VI VIR   1  1 10 10 10  Virgin Islands, U.S.
VN VNM  84  0  9 10  9  Vietnam|Viet Nam
VU VUT 678  -  5  7  7  Vanuatu
WF WLF 681  -  6  6  6  Wallis and Futuna
WS WSM 685  -  5 10 10  Samoa
YE YEM 967  0  7  9  9  Yemen
YT MYT 262  0  9  9  9  Mayotte
ZA ZAF  27  0  5  9  9  South Africa
ZM ZMB 260  0  9  9  9  Zambia
ZW ZWE 263  0  9  9  9  Zimbabwe
"""

# Names people type that are not ISO's short names: usual English forms, former names and
# the native names of the larger markets. Keys are ``_key`` forms.
_COUNTRY_ALIASES = {
    "uk": "GB",
    "greatbritain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northernireland": "GB",
    "el": "GR",  # the EU's code for Greece
    "america": "US",
    "unitedstatesofamerica": "US",
    "holland": "NL",
    "nederland": "NL",
    "deutschland": "DE",
    "osterreich": "AT",
    "oesterreich": "AT",
    "schweiz": "CH",
    "suisse": "CH",
    "svizzera": "CH",
    "espana": "ES",
    "italia": "IT",
    "belgie": "BE",
    "belgique": "BE",
    "sverige": "SE",
    "norge": "NO",
    "danmark": "DK",
    "suomi": "FI",
    "polska": "PL",
    "cesko": "CZ",
    "czechrepublic": "CZ",
    "ceskarepublika": "CZ",
    "slovensko": "SK",
    "slovenija": "SI",
    "hrvatska": "HR",
    "magyarorszag": "HU",
    "eire": "IE",
    "hellas": "GR",
    "ellada": "GR",
    "lietuva": "LT",
    "latvija": "LV",
    "eesti": "EE",
    "luxemburg": "LU",
    "brasil": "BR",
    "turkey": "TR",
    "russia": "RU",
    "republicofkorea": "KR",
    "ivorycoast": "CI",
    "capeverde": "CV",
    "swaziland": "SZ",
    "burma": "MM",
    "easttimor": "TL",
    "vatican": "VA",
    "vaticancity": "VA",
    "holysee": "VA",
    "macedonia": "MK",
    "brunei": "BN",
    "macau": "MO",
    "palestine": "PS",
    "micronesia": "FM",
    "uae": "AE",
    "drc": "CD",
    "drcongo": "CD",
    "democraticrepublicofthecongo": "CD",
    "congokinshasa": "CD",
    "republicofthecongo": "CG",
    "congobrazzaville": "CG",
    "saintmartin": "MF",
    "sintmaarten": "SX",
    "falklandislands": "FK",
    "usvirginislands": "VI",
    "britishvirginislands": "VG",
}

# ANSI/FIPS state codes with their names, and Canada Post's province and territory codes.
_US_STATES = """
AL Alabama; AK Alaska; AZ Arizona; AR Arkansas; CA California; CO Colorado;
CT Connecticut; DE Delaware; DC District of Columbia; FL Florida; GA Georgia; HI Hawaii;
ID Idaho; IL Illinois; IN Indiana; IA Iowa; KS Kansas; KY Kentucky; LA Louisiana;
ME Maine; MD Maryland; MA Massachusetts; MI Michigan; MN Minnesota; MS Mississippi;
MO Missouri; MT Montana; NE Nebraska; NV Nevada; NH New Hampshire; NJ New Jersey;
NM New Mexico; NY New York; NC North Carolina; ND North Dakota; OH Ohio; OK Oklahoma;
OR Oregon; PA Pennsylvania; RI Rhode Island; SC South Carolina; SD South Dakota;
TN Tennessee; TX Texas; UT Utah; VT Vermont; VA Virginia; WA Washington;
WV West Virginia; WI Wisconsin; WY Wyoming; AS American Samoa; GU Guam;
MP Northern Mariana Islands; PR Puerto Rico; VI U.S. Virgin Islands;
UM U.S. Minor Outlying Islands; AA Armed Forces Americas; AE Armed Forces Europe;
AP Armed Forces Pacific
"""
_CA_PROVINCES = """
AB Alberta; BC British Columbia; MB Manitoba; NB New Brunswick;
NL Newfoundland and Labrador; NS Nova Scotia; NT Northwest Territories; NU Nunavut;
ON Ontario; PE Prince Edward Island; QC Quebec; SK Saskatchewan; YT Yukon
"""

# Calling codes that belong to no country: international freephone, satellite and so on.
_NON_GEOGRAPHIC_CODES = frozenset({"800", "808", "870", "878", "881", "882", "883", "888", "979"})
# Assigned to places without an ISO 3166-1 code of their own: Ascension, Kosovo.
_OTHER_CODES = {"247": (4, 5), "383": (8, 9)}


def _load_countries() -> dict[str, _Country]:
    countries = {}
    for line in _COUNTRY_TABLE.strip().splitlines():
        a2, a3, code, trunk, low, high, mobile, names = line.split(maxsplit=7)
        missing = code == "-"
        countries[a2] = _Country(
            alpha2=a2,
            alpha3=a3,
            calling_code=None if missing else code,
            trunk=None if trunk == "-" else trunk,
            national_min=0 if missing else int(low),
            national_max=0 if missing else int(high),
            mobile_max=0 if missing else int(mobile),
            names=tuple(names.split("|")),
        )
    return countries


def _national_lengths(countries: dict[str, _Country]) -> dict[str, tuple[int, int]]:
    """Per calling code, the shortest and longest national number of its countries."""
    lengths: dict[str, tuple[int, int]] = dict(_OTHER_CODES)
    for plan in countries.values():
        if plan.calling_code is None:
            continue
        low, high = lengths.get(plan.calling_code, (plan.national_min, plan.national_max))
        lengths[plan.calling_code] = (
            min(low, plan.national_min),
            max(high, plan.national_max),
        )
    return lengths


def _trunk_zero_codes(countries: dict[str, _Country]) -> frozenset[str]:
    """Calling codes whose every country dials "0" before national numbers.

    After such a code a leading "0" is a mistake ("+44 020 ..."); after others (Italy's
    +39) it is part of the number.
    """
    trunks: dict[str, set[str | None]] = {}
    for plan in countries.values():
        if plan.calling_code is not None:
            trunks.setdefault(plan.calling_code, set()).add(plan.trunk)
    return frozenset(code for code, found in trunks.items() if found == {"0"})


def _load_states(table: str) -> dict[str, str]:
    states = {}
    for entry in table.split(";"):
        code, state_name = entry.split(maxsplit=1)
        states[_key(state_name)] = code.lower()
        states[code.lower()] = code.lower()
    return states


_COUNTRIES = _load_countries()
_ALPHA3 = {plan.alpha3: a2 for a2, plan in _COUNTRIES.items()}
_COUNTRY_KEYS = {
    **{_key(n): a2 for a2, plan in _COUNTRIES.items() for n in plan.names},
    **_COUNTRY_ALIASES,
}
_CALLING_CODES = frozenset(
    {p.calling_code for p in _COUNTRIES.values() if p.calling_code}
    | _NON_GEOGRAPHIC_CODES
    | set(_OTHER_CODES)
)
_NATIONAL_LENGTHS = _national_lengths(_COUNTRIES)
_TRUNK_ZERO_CODES = _trunk_zero_codes(_COUNTRIES)
_STATE_CODES = {
    "us": {**_load_states(_US_STATES), "washingtondc": "dc"},
    "ca": {**_load_states(_CA_PROVINCES), "newfoundland": "nl", "yukonterritory": "yt"},
}
_ANY_STATE_CODE = {**_STATE_CODES["ca"], **_STATE_CODES["us"]}
