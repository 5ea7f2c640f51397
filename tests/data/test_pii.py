"""PII scrubbing: each kind found and replaced, look-alikes (bad checksums, ordinary numbers) left alone."""

from __future__ import annotations

from engine.data.pii import KINDS, ScrubPii, cn_id_valid, luhn_valid, scrub

ALL = list(KINDS)
VALID_ID = "110101199003074573"  # checksum digit 3 is right for these 17 digits


def test_checksums():
    assert cn_id_valid(VALID_ID) and not cn_id_valid("110101199003074574")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_each_kind_is_scrubbed():
    text = (f"Mail a.b-c@example.co.uk, 手机 13812345678 或 +86 139-1234-5678, 身份证 {VALID_ID}, "
            f"card 4111 1111 1111 1111, call (555) 123-4567, server 192.168.10.1 and 2001:db8::8a2e:370:7334.")
    out, counts = scrub(text, ALL)
    for secret in ("a.b-c@example.co.uk", "13812345678", "139-1234-5678", VALID_ID, "4111 1111", "123-4567",
                   "192.168.10.1", "2001:db8"):
        assert secret not in out, secret
    assert counts == {"email": 1, "cn_mobile": 2, "cn_id": 1, "card": 1, "phone": 1, "ipv4": 1, "ipv6": 1}
    assert "<EMAIL>" in out and "<CN_ID>" in out and "<CARD>" in out


def test_look_alikes_are_kept():
    text = ("订单号 110101199003074574 未通过校验, card 4111 1111 1111 1112, version 1.2.3.4.5, "
            "year 2024, 12345, ip 999.1.1.1, time 12:30:45")
    out, counts = scrub(text, ALL)
    assert counts == {}
    assert out == text


def test_step_records_counts_and_respects_kinds():
    rec = {"text": "write to x@y.org or 13812345678"}
    assert ScrubPii(kinds=["email"]).apply(rec) is None
    assert rec["text"] == "write to <EMAIL> or 13812345678"
    assert rec["pii"] == {"email": 1}
    try:
        ScrubPii(kinds=["passport"])
    except ValueError as e:
        assert "passport" in str(e)
    else:
        raise AssertionError("unknown kind accepted")
