"""Click-id capture from URLs and Segment campaign objects, and Meta's fbc/fbp formats."""

from __future__ import annotations

import re
import string
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracklayer.pipeline import click_ids as c

# Meta's own examples (conversions-api/parameters/fbp-and-fbc and customer-information-parameters)
META_FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk"
META_FBC = "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890"
META_FBP = "fb.1.1596403881668.1116446470"
DAY = 86_400.0


def test_every_platform_parameter_has_a_canonical_key():
    assert c.CLICK_ID_PARAMS == {
        "fbclid": "fbclid",
        "gclid": "gclid",
        "gbraid": "gbraid",
        "wbraid": "wbraid",
        "ttclid": "ttclid",
        "ScCid": "sccid",
        "rdt_cid": "rdt_cid",
        "epik": "epik",
        "li_fat_id": "li_fat_id",
        "msclkid": "msclkid",
    }


def test_meta_documented_landing_url():
    assert c.from_url(f"https://example.com/?fbclid={META_FBCLID}") == {"fbclid": META_FBCLID}


def test_all_click_ids_from_one_url_with_case_preserved():
    url = (
        "https://shop.example.com/landing?utm_source=ads&fbclid=IwAR2Fx_Yz-AbC"
        "&gclid=Cj0KCQiA&gbraid=0AAAAAoR&wbraid=ClkKCQjw&ttclid=E.C.P.CqgBAbCd"
        "&ScCid=7a4bd3cd-6b7c-4d6e&rdt_cid=1234567890_AbC&epik=dj0yJnU9QWJD"
        "&li_fat_id=6f9619ff-8b86-d011-b42d-00cf4fc964ff&msclkid=5c1e4b1a9b2d1f0e"
    )
    assert c.from_url(url) == {
        "fbclid": "IwAR2Fx_Yz-AbC",
        "gclid": "Cj0KCQiA",
        "gbraid": "0AAAAAoR",
        "wbraid": "ClkKCQjw",
        "ttclid": "E.C.P.CqgBAbCd",
        "sccid": "7a4bd3cd-6b7c-4d6e",
        "rdt_cid": "1234567890_AbC",
        "epik": "dj0yJnU9QWJD",
        "li_fat_id": "6f9619ff-8b86-d011-b42d-00cf4fc964ff",
        "msclkid": "5c1e4b1a9b2d1f0e",
    }


def test_parameter_names_match_case_insensitively_but_exact_spelling_wins():
    assert c.from_url("https://x.test/?sccid=loose") == {"sccid": "loose"}
    assert c.from_url("https://x.test/?GCLID=Upper") == {"gclid": "Upper"}
    assert c.from_url("https://x.test/?sccid=loose&ScCid=Exact") == {"sccid": "Exact"}
    assert c.from_url("https://x.test/?ScCid=Exact&SCCID=loose") == {"sccid": "Exact"}


def test_first_usable_value_wins():
    assert c.from_url("https://x.test/?gclid=first&gclid=second") == {"gclid": "first"}
    assert c.from_url("https://x.test/?gclid=&gclid=second") == {"gclid": "second"}
    assert c.from_url("https://x.test/?gclid=undefined&gclid=real") == {"gclid": "real"}


def test_values_are_percent_decoded_and_trimmed_only():
    assert c.from_url("https://x.test/?fbclid=AbC%2DdEf") == {"fbclid": "AbC-dEf"}
    assert c.from_url("https://x.test/?fbclid=%20AbC%20") == {"fbclid": "AbC"}


@pytest.mark.parametrize(
    "query",
    [
        "gclid=",
        "gclid=%20%20",
        "gclid={gclid}",
        "gclid={{gclid}}",
        "gclid=undefined",
        "gclid=null",
        "gclid=None",
        "gclid=<script>",
        "gclid=two%20words",
        "gclid=%22quoted%22",
        "gclid=caf%C3%A9",
        "gclid=a%00b",
        "gclid=" + "x" * (c.MAX_VALUE_LENGTH + 1),
    ],
)
def test_unusable_values_are_ignored(query):
    assert c.from_url(f"https://x.test/?{query}") == {}


def test_longest_accepted_value():
    value = "x" * c.MAX_VALUE_LENGTH
    assert c.from_url(f"https://x.test/?gclid={value}") == {"gclid": value}


def test_query_in_fragment_fills_in_for_single_page_apps():
    assert c.from_url("https://x.test/#/landing?gclid=Frag") == {"gclid": "Frag"}
    assert c.from_url("https://x.test/?gclid=Query#gclid=Frag&ttclid=T") == {
        "gclid": "Query",
        "ttclid": "T",
    }
    assert c.from_url("https://x.test/page#section-2") == {}


def test_referrers_without_scheme_and_bare_queries():
    assert c.from_url("shop.example.com/?msclkid=abc") == {"msclkid": "abc"}
    assert c.from_url("?epik=dj0y") == {"epik": "dj0y"}


@pytest.mark.parametrize(
    "garbage",
    [None, "", 42, b"https://x.test/?gclid=a", ["?gclid=a"], "http://[::1", "not a url", "%%%"],
)
def test_garbage_urls_give_nothing(garbage):
    assert c.from_url(garbage) == {}


def test_huge_url_is_refused():
    assert c.from_url("https://x.test/?gclid=a&" + "p=1&" * 10_000) == {}


def test_from_campaign_reads_click_ids_and_ignores_utm_fields():
    campaign = {
        "name": "BFCM",
        "source": "google",
        "medium": "cpc",
        "term": "shoes",
        "content": "ad-1",
        "gclid": "Cj0KCQiA",
        "MSCLKID": "5c1e4b1a",
        "ttclid": 12345,
        "fbclid": "",
    }
    assert c.from_campaign(campaign) == {"gclid": "Cj0KCQiA", "msclkid": "5c1e4b1a"}


@pytest.mark.parametrize("garbage", [None, "gclid=a", ["gclid", "a"], 3, {1: "a", None: "b"}])
def test_from_campaign_garbage_gives_nothing(garbage):
    assert c.from_campaign(garbage) == {}


# -- fbc / fbp -----------------------------------------------------------------------------


def test_fbc_from_fbclid_matches_meta_format_and_keeps_case():
    fbc = c.fbc_from_fbclid("AbCdEfGhIjKlMnOpQrStUvWxYz1234567890", 1554763741205)
    assert fbc == META_FBC
    assert c.fbc_from_fbclid(META_FBCLID, 1700000000000) == f"fb.1.1700000000000.{META_FBCLID}"
    assert c.is_valid_fbc(fbc)


@pytest.mark.parametrize(
    ("fbclid", "first_seen_ms"),
    [
        ("", 1554763741205),
        ("  ", 1554763741205),
        ("undefined", 1554763741205),
        ("has.dot", 1554763741205),
        ("has space", 1554763741205),
        ("x" * 501, 1554763741205),
        (None, 1554763741205),
        ("AbC", 1554763741),  # seconds, not milliseconds
        ("AbC", -1),
        ("AbC", True),
        ("AbC", 1554763741205.0),
        ("AbC", "1554763741205"),
    ],
)
def test_fbc_from_fbclid_refuses_what_meta_would_flag(fbclid, first_seen_ms):
    with pytest.raises(ValueError):
        c.fbc_from_fbclid(fbclid, first_seen_ms)


@pytest.mark.parametrize(
    "value",
    [
        META_FBC,
        f"fb.1.1554763741205.{META_FBCLID}",
        "fb.2.1554763741205.AbC_dEf-123",
        "fb.0.1554763741205.AbC",
        # Parameter Builder appendix: 8 characters, or a legacy 2-character token
        "fb.1.1554763741205.AbCdEf.ABcDEFGh",
        "fb.1.1554763741205.AbCdEf.AQ",
    ],
)
def test_valid_fbc(value):
    assert c.is_valid_fbc(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "fb.1.1554763741.AbC",  # seconds
        "fb.1.1554763741205.",
        "fb.1.1554763741205",
        "fb.x.1554763741205.AbC",
        "fbc.1.1554763741205.AbC",
        "FB.1.1554763741205.AbC",
        "fb.1.1554763741205.Ab C",
        "fb.1.1554763741205.AbC.ABC",  # appendix of the wrong length
        "fb.1.1554763741205.AbC\n",
        "fb.1.1554763741205." + "x" * 600,
        None,
        12,
    ],
)
def test_invalid_fbc(value):
    assert not c.is_valid_fbc(value)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (META_FBP, True),
        ("fb.2.1596403881668.1116446470", True),
        ("fb.1.1596403881668.1116446470.ABcDEFGh", True),
        ("fb.1.1596403881668.abc", False),
        ("fb.1.1596403881.1116446470", False),
        ("fb.1.1596403881668.", False),
        ("1116446470", False),
        (None, False),
    ],
)
def test_fbp_format(value, valid):
    assert c.is_valid_fbp(value) is valid


# -- windows -------------------------------------------------------------------------------


def test_every_click_id_has_a_window():
    assert set(c.DEFAULT_WINDOWS) == set(c.CLICK_ID_PARAMS.values())
    assert all(isinstance(seconds, float) and seconds > 0 for seconds in c.DEFAULT_WINDOWS.values())


@pytest.mark.parametrize(
    ("key", "days"),
    [
        ("fbclid", 7),
        ("gclid", 90),
        ("gbraid", 90),
        ("wbraid", 90),
        ("ttclid", 28),
        ("sccid", 28),
        ("rdt_cid", 28),
        ("epik", 60),
        ("li_fat_id", 90),
        ("msclkid", 90),
    ],
)
def test_window_is_the_platforms_longest_click_window(key, days):
    assert c.DEFAULT_WINDOWS[key] == days * DAY


# -- properties ----------------------------------------------------------------------------

CLICK_ID_VALUES = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1).filter(
    lambda v: v.lower() not in {"undefined", "null", "none", "nan", "true", "false"}
)
PARAMS = st.sampled_from(sorted(c.CLICK_ID_PARAMS))


@given(st.text(max_size=300))
def test_from_url_never_raises_and_returns_clean_values(url):
    found = c.from_url(url)
    assert set(found) <= set(c.CLICK_ID_PARAMS.values())
    for value in found.values():
        assert value and value == value.strip() and len(value) <= c.MAX_VALUE_LENGTH


@given(
    ids=st.dictionaries(PARAMS, CLICK_ID_VALUES.filter(lambda v: len(v) <= 100), max_size=10),
    noise=st.dictionaries(st.sampled_from(["utm_source", "q", "page", "ref"]), st.text()),
)
def test_click_ids_round_trip_through_a_url_exactly(ids, noise):
    url = "https://shop.example.com/p?" + urlencode({**noise, **ids})
    expected = {
        c.CLICK_ID_PARAMS[param]: value
        for param, value in ids.items()
        # an fbclid outside Meta's alphabet can make no fbc, so it is not taken at all
        if c.CLICK_ID_PARAMS[param] != "fbclid" or re.fullmatch(r"[A-Za-z0-9_-]+", value)
    }
    assert c.from_url(url) == expected


@given(st.dictionaries(st.one_of(st.text(), st.integers()), st.one_of(st.text(), st.none())))
def test_from_campaign_never_raises(campaign):
    found = c.from_campaign(campaign)
    assert set(found) <= set(c.CLICK_ID_PARAMS.values())


@given(
    fbclid=st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=200)
)
def test_generated_fbc_is_always_valid(fbclid):
    if fbclid.lower() in {"undefined", "null", "none", "nan", "true", "false"}:
        return
    fbc = c.fbc_from_fbclid(fbclid, 1_700_000_000_000)
    assert c.is_valid_fbc(fbc)
    assert fbc.rsplit(".", 1)[-1] == fbclid
