"""The standard Diffie-Hellman groups that tls_dhparam may name.

Spec "tls_dhparam": besides a file name and "none", the option may name a
published prime.  The RFC 2409/3526 MODP groups ("ike1", "ike2", "ike5",
"ike14" to "ike18") and the RFC 7919 groups ("ffdhe2048" to "ffdhe8192")
are defined by a formula over the binary digits of pi and e; we compute them
(exactly, with the decimal module) rather than carry their digits.  The RFC
5114 groups ("ike22" to "ike24") have no such formula: they are kept below
as PKCS#3 DER in base64, as ``openssl genpkey -genparam -algorithm DH
-pkeyopt group:dh_2048_224`` (and dh_1024_160, dh_2048_256) writes them;
so are Exim's own three primes ("exim.dev.20160529.1" to ".3", the third
also called "default").
"""

import base64
import functools
from decimal import Decimal, localcontext

# name -> (bits, constant, offset): p = 2^b - 2^(b-64) - 1 + 2^64 (floor(2^(b-130) c) + offset)
# with c = pi for the MODP groups (RFC 2409 6.1-6.2, RFC 3526) and c = e for
# the FFDHE groups (RFC 7919 appendix A); the generator is 2.
_FORMULA = {
    "ike1": (768, "pi", 149686),
    "ike2": (1024, "pi", 129093),
    "ike5": (1536, "pi", 741804),
    "ike14": (2048, "pi", 124476),
    "ike15": (3072, "pi", 1690314),
    "ike16": (4096, "pi", 240904),
    "ike17": (6144, "pi", 929484),
    "ike18": (8192, "pi", 4743158),
    "ffdhe2048": (2048, "e", 560316),
    "ffdhe3072": (3072, "e", 2625351),
    "ffdhe4096": (4096, "e", 5736041),
    "ffdhe6144": (6144, "e", 15705020),
    "ffdhe8192": (8192, "e", 10965728),
}

_RFC5114 = {
    "ike22": (
        "MIIBCAKBgQCxC4+WoIDgHd6S3l6uXVTsUsmfvPsGo8aaap3KUtI7YWBz4oZ1oj0YmDjvHi7m"
        "UsAT7LSuqQYRIySXXDzUm4O/rMvdfZDEvXCYSI6cIZpzck7/1vrlZEc4+qMaT/VbzMChUa9f"
        "Dci0vUW/N982XBpl5oz9p21NpwjfH7K8LkpDcQKBgQCk0cvVw/00EmdlpELvuZkF+BBN0lis"
        "UH/WQGz/FCZtMSZv6h5cQVZLd35pD1UE8hMWAhe0sBuIal6RVH+eJ0n01/vX07mpLuGQnQ0i"
        "Y/gKdqaiTAh6CR9THb8KAWm2oorWYqTRjnOvoy13nVkY0IvIhY9Nzvl8KiSFXm7rIrOy5Q=="),
    "ike23": (
        "MIICCgKCAQEArRB+HpEjqdDWYPqnlVnFH6INZOVoO5/RtUsVl7YdCnXm+hQd+VpW26+aPEB7"
        "od8V6z1oijCcGA4d5rhaEnSgpm0/gVKtasISkDfJ7e/aTfjZHo/vVbc5S3rVt9C2wSIHyfmN"
        "Ee002/bGugssi7wnvmoA4KC5xJcIs7+KMXCRiDaBKGEwvImF2xYC5xRBXZMwJ4Jzx94x79xz"
        "EPcSH9WgdBWYfZrcCkhtzfk6zEQyg4cxXXXhmMZBpIDNhqG55YfovmDmnMkosrnFIXLkEwQu"
        "myPxCw4W55djybU9z0uoCinj+3PBa451uX7zY+L/ox9xz53lOE5xuBwKxN/+DBDmTwKCAQEA"
        "rEAy708tmuOd8wtcj/2sUGzevnuJmYyvdIZqCM/k/+OmgkpOELmm8N2SHwGnDEr6q3OddwDC"
        "n1LFfbF8YgqGUr5ekAGo1mrXwXZpEBmZAkr00CcnWsE0i7inYtBSG8mK4kcVBCLqHtQJk51U"
        "2nRgzbX2xrJQcXy+8YDrNBGOmNEZUppF1vg0Vm4wJeMWozDvu3eobwwasVsFGuPUKMj4rLcK"
        "gTcVC47rEOGD7dGZY93Z4mPkdwWJ72qiHn9fL/OBtTnM40CdE81Wavu0jWwBkYHhvP6UswJp"
        "7f5y/ptqpL17Wg8ccc//TBnEGOH27AF5gbwIfypwZbOEuJDTGR8r+g=="),
    "ike24": (
        "MIICCQKCAQEAh6jmHbS2Zjz/u9GcZRlZmYzu9ghmDdDyXSzu1ENeOwDgDfjx1hlX1Pr330Vh"
        "sqowFsPZETQJb6o79Cltgw6afCCeDGSXUXq9WoqdMGvPZ+2R+eZyW0dYwCLgse9Cdb97bFv8"
        "EdRfkIi5QfVOseWbuLw5oL8SMH9cT9twxYGyP3a2Osrhyqa3kC1SUmc1SIoO8TxtmlG/pKs6"
        "2DR3llJNjvahZ7WkGCXZZ+FE5RQFZCUcysuD5rSG9rPKP3lxUGAmwLhX9omWKFbe1AEKvQvm"
        "IcOjlgpU5xDDdfJjddcBQQOktUMwwZivEmEW0iduEXFfaTh3+tfvCcrbCUrpHhoVlwKCAQA/"
        "syybcxNNCy53UGZg7b1ITKexjyHvIFQH9Hk6GguhJRDbwVB3vkY//0/tSqwLtVW+OmwbDGtH"
        "sbw3c79+jG9ikBIo+MKMuxilWuMTQQAKZQGW+THHelfy3fRj5ensFEt3feYqqrioYorDdtKC"
        "1u04ZOZ5gkKOvIMdFDSPby+Rk7UEWvJ2cWTh38lnwfs/LlWkvRv/6DucgNBSuYXRguoK2yo7"
        "cxPT/hTISEseBSWIubfSu9LfAWGZ7NBuFVfNCRWzNTu7ZODsN3/QKDcN+StSx4kUKM3GfrYY"
        "S1I9HbJGwy9jB4SQ8A741kfRSNR5VFFeIyfP75jFgmZLTA9sxBZZ"),
}

# Exim's own 2048-bit primes (made with "openssl dhparam -2 2048" by an
# Exim developer in 2016, so without a formula either); "default" names the
# third, which is also what an OpenSSL-built Exim uses when tls_dhparam is
# unset.
_EXIM_DEV = {
    "exim.dev.20160529.1": (
        "MIIBCAKCAQEA8ZMf89Gaye4bDEX1BXZ9+2edkXym9EK0GxmFilHEGpnhgLNmCk+H"
        "cCb+zn8Ed5bpCOmRuEv9N/VKPjSpno8jYiQbFgUL3vh8uKvQLJNTzDVDbpd3YO7E"
        "tiS0L0qWL57zIf8b3VZTMRsH4Orz2Rla61wVl6XpxE5WRfGqPS264Vvfew7xmCoi"
        "INaFzIU6zwk2WeD6K5asctYlQG/UtgY1nRFkQTebIOpm03a6/hw7F14l3yUZgXfv"
        "I3m4MFaWvxGcuZxddTijXw3VfjMdWvdH3Iz7IcqD32uEzK6Rgi/t4OVSw1kE2oDt"
        "cFThPUCWb7O4TVq9Xt2UZqZFNU6kUAkv2wIBAg=="),
    "exim.dev.20160529.2": (
        "MIIBCAKCAQEAot84eqyfSb5l8GRCN2ioWP5T85Z/2lVX9A9r9JzwDfvliAAqm6Vp"
        "UcHdAfVt54kc8DsmLiHdDhxY1I/wo+DcBylfVx13cmkroAocowOD5dwQMYk6iXjV"
        "ys4heRJhYlAHgt8QZH8dA8c/HLs+rlAHhSUPnetsZmcoPE0LRsjigJsiVXasm+sl"
        "g/77u5FCkgSrFILcD9PLPto1ciIXp2y8cjXQDk+D9FH1HaSCXLCLkuHxhQXxjTYO"
        "C3Q53aNLkDJ4zpPt7Kc9NxQFBVlNc260IFDOHTWhgV2zpyG6oIzQoHSmmiLAAfcF"
        "HrG7I06uZBLjuNGGaM0eeuxHNhs2G2EduwIBAg=="),
    "exim.dev.20160529.3": (
        "MIIBCAKCAQEAkbRYVoge2PtrmV1eKCKluSBFELgckuLSnkuH0TffqbmfoYM34lFu"
        "2vPM2LhnzKvEBQlIICOTzQD29kROacRfSKpsNINRXhXKUqI6sFXzUZu4Flk69XKG"
        "ZOSDYvWkI5pSn1amQ4Nnvn6s+uwn/f0ZDZDiKLW9TgntxJV4A2+yeymaeoGCbIXX"
        "5q8WgajFhAeut36RL93HBnXT1hT7Eja1Y81w9fOzQrwBuXhyfCkAdiMA/VCp0UD4"
        "0p7uf+okpckVnwD6WnUCHMij8nGlVblZELFYzNi0udtzIrSwlALbZXIeAqhbZXJO"
        "lCuYspJhzV0Vs0lDJwrxvNwtdg1ernVIowIBAg=="),
}
_ALIASES = {"default": "exim.dev.20160529.3"}

# RFC 8247 deprecates these four for IPsec: Exim warns in its main log when
# one is used, and also in the panic log for the MUST NOT pair
DEPRECATED_NAMES = frozenset(("ike1", "ike22", "ike23", "ike24"))
FORBIDDEN_NAMES = frozenset(("ike1", "ike22"))
NAMES = frozenset(_FORMULA) | frozenset(_RFC5114) | frozenset(_EXIM_DEV) | frozenset(_ALIASES)


def canonical(name):
    """The group a tls_dhparam name stands for: names are not case-sensitive,
    and "default" is an alias."""
    name = name.lower()
    return _ALIASES.get(name, name)


def _constant(which, digits):
    """pi (Machin's formula) or e (its series) to ``digits`` decimal places."""
    with localcontext() as ctx:
        ctx.prec = digits + 10
        eps = Decimal(10) ** -(digits + 5)
        if which == "e":
            total = term = Decimal(1)
            n = 1
            while term > eps:
                term /= n
                total += term
                n += 1
            return total

        def arctan_inverse(x):
            x = Decimal(x)
            power = 1 / x
            total, n, sign = power, 1, -1
            while power > eps:
                power /= x * x
                n += 2
                total += sign * power / n
                sign = -sign
            return total

        return 16 * arctan_inverse(5) - 4 * arctan_inverse(239)


def _formula_prime(bits, which, offset):
    with localcontext() as ctx:
        ctx.prec = bits // 3 + 40          # enough digits for 2^(bits-130) * c
        scaled = int(Decimal(2) ** (bits - 130) * _constant(which, bits // 3 + 30))
    return 2 ** bits - 2 ** (bits - 64) - 1 + 2 ** 64 * (scaled + offset)


def _der_integer(value):
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")   # a leading 0: positive
    return b"\x02" + _der_length(len(body)) + body


def _der_length(n):
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


@functools.lru_cache(maxsize=None)
def pem(name):
    """PKCS#3 PEM ("BEGIN DH PARAMETERS") for a standard group; KeyError if unknown."""
    name = canonical(name)
    stored = _RFC5114.get(name) or _EXIM_DEV.get(name)
    if stored:
        der = base64.b64decode("".join(stored))
    else:
        body = _der_integer(_formula_prime(*_FORMULA[name])) + _der_integer(2)
        der = b"\x30" + _der_length(len(body)) + body
    text = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return ("-----BEGIN DH PARAMETERS-----\n%s\n-----END DH PARAMETERS-----\n"
            % "\n".join(lines)).encode("ascii")


def prime_bits(pem_bytes):
    """The size in bits of the prime in PKCS#3 PEM data (for tls_dh_max_bits);
    None when the data is not DH parameters."""
    p = prime(pem_bytes)
    return None if p is None else p.bit_length()


def prime(pem_bytes):
    """The prime in PKCS#3 PEM data; None when the data is not DH parameters."""
    lines = pem_bytes.decode("ascii", "replace").splitlines()
    try:
        start = lines.index("-----BEGIN DH PARAMETERS-----")
        der = base64.b64decode("".join(lines[start + 1:lines.index("-----END DH PARAMETERS-----")]))
        pos = 1 + _skip_length(der, 1)           # into the SEQUENCE
        if der[0] != 0x30 or der[pos] != 0x02:
            return None
        length, pos = _read_length(der, pos + 1)
        return int.from_bytes(der[pos:pos + length], "big")
    except (ValueError, IndexError):
        return None


def _read_length(der, pos):
    first = der[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    return int.from_bytes(der[pos + 1:pos + 1 + count], "big"), pos + 1 + count


def _skip_length(der, pos):
    return _read_length(der, pos)[1] - pos
