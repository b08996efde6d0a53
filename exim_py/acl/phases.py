"""Where an ACL runs: the phases, and which conditions and controls each allows.

Exim numbers the places an ACL can be called from ("where") and keeps, for
every condition, modifier and ``control =`` value, a set of places where it
makes no sense (spec chapter "Access control lists", section "ACL
conditions").  Using one of them in a forbidden place is not a configuration
error, because an ACL only learns where it runs when it runs: the check
fails at run time with Exim's "cannot test ... condition in ... ACL" error,
which the caller turns into a temporary rejection.
"""

# The order matters: Exim treats every place up to and including "not_smtp"
# as a message ACL (one that may add headers, discard, freeze ...).  An ACL
# run by ${acl} from outside any ACL (a router, -be) runs in "unknown".
WHERES = (
    "rcpt", "mail", "predata", "mime", "dkim", "data", "data_prdr", "not_smtp",
    "auth", "connect", "etrn", "expn", "helo", "mailauth", "not_smtp_start",
    "notquit", "quit", "starttls", "vrfy", "unknown",
)

# Exim's names for the places, as they appear in log lines and errors.
WHERE_NAMES = {
    "rcpt": "RCPT", "mail": "MAIL", "predata": "PREDATA", "mime": "MIME",
    "dkim": "DKIM", "data": "DATA", "data_prdr": "PRDR", "not_smtp": "non-SMTP",
    "auth": "AUTH", "connect": "connection", "etrn": "ETRN", "expn": "EXPN",
    "helo": "EHLO or HELO", "mailauth": "MAILAUTH",
    "not_smtp_start": "non-SMTP-start", "notquit": "NOTQUIT", "quit": "QUIT",
    "starttls": "STARTTLS", "vrfy": "VRFY", "unknown": "unknown",
}

# The SMTP code of a permanent rejection in each place.  VRFY gets 252
# (RFC 5321 3.5.3: a refused VRFY must not claim the address is bad), ETRN
# 458 and AUTH 503; the others have no SMTP reply of their own.
WHERE_CODES = {
    "rcpt": "550", "mail": "550", "predata": "550", "mime": "550", "dkim": "550",
    "data": "550", "data_prdr": "550", "auth": "503", "connect": "550",
    "etrn": "458", "expn": "550", "helo": "550", "starttls": "550", "vrfy": "252",
}

MESSAGE_WHERES = frozenset(WHERES[:WHERES.index("not_smtp") + 1])

# Places where an unset acl_smtp_* option means "refuse": Exim calls the ACL
# with no text, which is an implicit deny.  Everywhere else an unset option
# means the ACL is not run at all, which is acceptance.
DENY_WHEN_UNSET = frozenset(("rcpt", "vrfy", "expn", "etrn"))

ALL = frozenset(WHERES)


def only(*wheres):
    """The forbidden set for something allowed only in ``wheres``."""
    return ALL - frozenset(wheres)


_MESSAGE_HEADERS = only("mail", "rcpt", "predata", "data", "data_prdr", "mime",
                        "not_smtp", "dkim", "not_smtp_start")
_SENDER_FORBIDDEN = frozenset(("auth", "connect", "helo", "mailauth", "quit", "etrn",
                               "expn", "starttls", "vrfy"))
# SPF needs the request set up at HELO and the sender (spec section SECSPF)
_SPF_FORBIDDEN = frozenset(("auth", "connect", "helo", "mailauth", "etrn", "expn",
                            "starttls", "vrfy", "not_smtp", "not_smtp_start"))

# For each condition and modifier: (is_modifier, expand_at_top, forbidden places).
# Conditions whose argument is a list are expanded by the list matcher itself.
CONDITIONS = {
    "acl": (False, False, frozenset()),
    "add_header": (True, True, _MESSAGE_HEADERS),
    "authenticated": (False, False, frozenset(("not_smtp", "not_smtp_start",
                                               "connect", "helo"))),
    "condition": (False, True, frozenset()),
    "continue": (True, True, frozenset()),
    "control": (True, True, frozenset()),
    "delay": (True, True, frozenset(("notquit",))),
    "dnslists": (False, True, frozenset()),
    "domains": (False, False, only("rcpt", "vrfy", "data_prdr")),
    "encrypted": (False, False, frozenset(("not_smtp", "not_smtp_start", "helo"))),
    "endpass": (True, True, frozenset()),
    "hosts": (False, False, frozenset(("not_smtp", "not_smtp_start"))),
    "local_parts": (False, False, only("rcpt", "vrfy", "data_prdr")),
    "log_message": (True, True, frozenset()),
    "log_reject_target": (True, True, frozenset()),
    "logwrite": (True, True, frozenset()),
    "message": (True, True, frozenset()),
    "queue": (True, True, frozenset(("not_smtp", "data_prdr", "data"))),
    "ratelimit": (False, True, frozenset()),
    "recipients": (False, False, only("rcpt")),
    "remove_header": (True, True, only("mail", "rcpt", "predata", "data", "data_prdr",
                                       "mime", "not_smtp", "not_smtp_start")),
    "sender_domains": (False, False, _SENDER_FORBIDDEN),
    "senders": (False, False, _SENDER_FORBIDDEN),
    "set": (True, True, frozenset()),
    "spf": (False, True, _SPF_FORBIDDEN),
    "spf_guess": (False, True, _SPF_FORBIDDEN),
    "udpsend": (True, True, frozenset()),
    "verify": (False, True, frozenset()),
}

_NOT_SMTP = frozenset(("not_smtp", "not_smtp_start"))
_MESSAGE_CONTROL = only("mail", "rcpt", "predata", "data", "not_smtp", "mime")
_FAKE = only("mail", "rcpt", "predata", "data", "data_prdr", "mime")

# control = NAME[/options]: (takes options, forbidden places).
CONTROLS = {
    "allow_auth_unadvertised": (False, only("connect", "helo")),
    "caseful_local_part": (False, only("rcpt")),
    "caselower_local_part": (False, only("rcpt")),
    "cutthrough_delivery": (True, frozenset()),
    "debug": (True, frozenset()),
    "dkim_disable_verify": (False, frozenset(("data", "not_smtp", "data_prdr",
                                              "not_smtp_start"))),
    "dmarc_disable_verify": (False, frozenset(("data", "not_smtp", "not_smtp_start"))),
    "dmarc_enable_forensic": (False, frozenset(("data", "not_smtp", "not_smtp_start"))),
    "dscp": (True, _NOT_SMTP | {"notquit"}),
    "enforce_sync": (False, _NOT_SMTP),
    "fakedefer": (True, _FAKE),
    "fakereject": (True, _FAKE),
    "freeze": (True, _MESSAGE_CONTROL),
    "no_callout_flush": (False, _NOT_SMTP),
    "no_delay_flush": (False, _NOT_SMTP),
    "no_enforce_sync": (False, _NOT_SMTP),
    "no_mbox_unspool": (False, only("mail", "rcpt", "predata", "data", "mime")),
    "no_multiline_responses": (False, _NOT_SMTP),
    "no_pipelining": (False, _NOT_SMTP),
    "queue": (True, _MESSAGE_CONTROL),
    "queue_only": (False, _MESSAGE_CONTROL),
    "submission": (True, only("mail", "rcpt", "predata")),
    "suppress_local_fixups": (False, only("mail", "rcpt", "predata", "not_smtp_start")),
    "utf8_downconvert": (True, only("rcpt", "vrfy")),
}

# verify = WHAT: (places it is allowed, takes /options).
VERIFIES = {
    "reverse_host_lookup": (ALL, True),
    "certificate": (ALL, False),
    "helo": (ALL, False),
    "csa": (ALL, True),
    "header_syntax": (frozenset(("data", "not_smtp")), False),
    "not_blind": (frozenset(("data", "not_smtp")), True),
    "header_sender": (frozenset(("data", "not_smtp")), True),
    "sender": (frozenset(("mail", "rcpt", "predata", "data", "not_smtp")), True),
    "recipient": (frozenset(("rcpt",)), True),
    "header_names_ascii": (frozenset(("data", "not_smtp")), False),
}

VERBS = ("accept", "defer", "deny", "discard", "drop", "require", "warn")
