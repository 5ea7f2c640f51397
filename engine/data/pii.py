"""PII scrubbing: e-mail addresses, phone numbers (Chinese mobiles and international forms), IPv4/IPv6
addresses, Chinese resident ID numbers (checksum and birth date checked) and payment card numbers (Luhn checked).

Checksums keep ordinary long numbers (order ids, timestamps) from being blanked. Matches are replaced by a
placeholder per kind and counted into the record's `pii` field, so the funnel can show what was scrubbed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
CN_ID_RE = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
                      r"(?![0-9A-Za-z])")
CARD_RE = re.compile(r"(?<![\d-])[3-6](?:\d[ -]?){11,17}\d(?![\d-])")  # Visa, MC, Amex, UnionPay …
CN_MOBILE_RE = re.compile(r"(?<!\d)(?:(?:\+|00)86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)")
PHONE_RE = re.compile(r"(?<![\w+])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?"
                      r"(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?![ .-]?\d)")
IPV4_RE = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])")
IPV6_RE = re.compile(r"(?<![:\w])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![:\w])")  # checked by ipaddress
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_valid(number: str) -> bool:
    """ISO 7064 MOD 11-2 check digit of an 18-character Chinese resident ID."""
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _ipv6(match: re.Match) -> bool:
    try:
        ipaddress.IPv6Address(match.group())
        return True
    except ValueError:
        return False


def _card(match: re.Match) -> bool:
    digits = re.sub(r"[ -]", "", match.group())
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


# Order matters: ID numbers and cards are long digit runs a phone pattern would otherwise eat in part.
KINDS = {
    "email": (EMAIL_RE, None),
    "cn_id": (CN_ID_RE, lambda m: cn_id_valid(m.group())),
    "cn_mobile": (CN_MOBILE_RE, None),
    "card": (CARD_RE, _card),
    "phone": (PHONE_RE, None),
    "ipv4": (IPV4_RE, None),
    "ipv6": (IPV6_RE, _ipv6),
}


def scrub(text: str, kinds: list[str], placeholder: str = "<{kind}>") -> tuple[str, dict[str, int]]:
    """Text with every match of the given kinds replaced, and the count per kind."""
    counts: dict[str, int] = {}
    for kind in kinds:
        pattern, check = KINDS[kind]

        def replace(m: re.Match, kind=kind, check=check) -> str:
            if check is not None and not check(m):
                return m.group()
            counts[kind] = counts.get(kind, 0) + 1
            return placeholder.format(kind=kind.upper())

        text = pattern.sub(replace, text)
    return text, counts


@dataclass
class ScrubPii:
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    """What to scrub: email, cn_id, card, cn_mobile, phone, ipv4, ipv6."""
    placeholder: str = "<{kind}>"
    """Replacement; {kind} becomes EMAIL, PHONE …"""

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"kinds: unknown PII kind(s) {', '.join(unknown)} (known: {', '.join(KINDS)})")

    def apply(self, rec: dict) -> str | None:
        rec["text"], counts = scrub(rec["text"], self.kinds, self.placeholder)
        if counts:
            rec["pii"] = counts
        return None
