"""Expansion variables: which names exist, and the values exim_py computes itself.

The set of names is Exim's (spec chapter "String expansions", section
"Expansion variables"), as built into Debian's exim4-daemon-heavy: a name
outside it is an expansion error even in a branch that is not taken.  Values
come from the ExpandContext first; the few that Exim computes on demand
(time of day, process id, configuration paths) are computed here.
"""

import os
import shutil
import socket
import sys
import time

from exim_py import EXIM_COMPAT_VERSION

_NAMES = """
acl_arg1 acl_arg2 acl_arg3 acl_arg4 acl_arg5 acl_arg6 acl_arg7 acl_arg8 acl_arg9
acl_narg acl_verify_message address_data address_file address_pipe
authenticated_fail_id authenticated_id authenticated_sender authentication_failed
av_failed body_linecount body_zerocount bounce_recipient bounce_return_size_limit
caller_gid caller_uid callout_address compile_date compile_number config_dir
config_file csa_status dkim_algo dkim_bodylength dkim_canon_body dkim_canon_headers
dkim_copiedheaders dkim_created dkim_cur_signer dkim_domain dkim_expires
dkim_headernames dkim_identity dkim_key_granularity dkim_key_length
dkim_key_nosubdomains dkim_key_notes dkim_key_srvtype dkim_key_testing
dkim_selector dkim_signers dkim_verify_reason dkim_verify_status
dnslist_domain dnslist_matched dnslist_text dnslist_value domain domain_data
event_data event_defer_errno event_name exim_gid exim_path exim_uid exim_version
headers_added home host host_address host_data host_lookup_deferred
host_lookup_failed host_port initial_cwd inode interface_address interface_port
item ldap_dn load_average local_part local_part_data local_part_prefix
local_part_prefix_v local_part_suffix local_part_suffix_v local_scan_data
local_user_gid local_user_uid localhost_number log_inodes log_space
lookup_dnssec_authenticated mailstore_basename malware_name
max_received_linelength message_age message_body message_body_end
message_body_size message_exim_id message_headers message_headers_raw message_id
message_linecount message_size message_smtputf8 mime_anomaly_level
mime_anomaly_text mime_boundary mime_charset mime_content_description
mime_content_disposition mime_content_id mime_content_size
mime_content_transfer_encoding mime_content_type mime_decoded_filename
mime_filename mime_is_coverletter mime_is_multipart mime_is_rfc822 mime_part_count
original_domain original_local_part originator_gid originator_uid parent_domain
parent_local_part pid prdr_requested primary_hostname proxy_external_address
proxy_external_port proxy_local_address proxy_local_port proxy_session
prvscheck_address prvscheck_keynum prvscheck_result qualify_domain
qualify_recipient queue_name queue_size rcpt_count rcpt_defer_count
rcpt_fail_count received_count received_for received_ip_address received_port
received_protocol received_time recipient_data recipient_verify_failure
recipients recipients_count regex_cachesize regex_match_string reply_address
return_path return_size_limit router_name runrc self_hostname sender_address
sender_address_data sender_address_domain sender_address_local_part sender_data
sender_fullhost sender_helo_dnssec sender_helo_name
sender_host_address sender_host_authenticated sender_host_dnssec
sender_host_name sender_host_port sender_ident sender_rate sender_rate_limit
sender_rate_period sender_rcvhost sender_verify_failure sending_ip_address
sending_port smtp_active_hostname smtp_command smtp_command_argument
smtp_command_history smtp_count_at_connection_start smtp_notquit_reason
spam_action spam_bar spam_report spam_score spam_score_int spf_guess
spf_header_comment spf_received spf_result spf_result_guessed spf_smtp_comment
spool_directory spool_inodes spool_space srs_recipient thisaddress tls_bits
tls_certificate_verified tls_cipher tls_in_bits tls_in_certificate_verified
tls_in_cipher tls_in_cipher_std tls_in_ocsp tls_in_ourcert tls_in_peercert
tls_in_peerdn tls_in_resumption tls_in_sni tls_in_ver tls_out_bits
tls_out_certificate_verified tls_out_cipher tls_out_cipher_std tls_out_dane
tls_out_ocsp tls_out_ourcert tls_out_peercert tls_out_peerdn tls_out_resumption
tls_out_sni tls_out_tlsa_usage tls_out_ver tls_peerdn tls_sni tod_bsdinbox
tod_epoch tod_epoch_l tod_full tod_log tod_logfile tod_zone tod_zulu
transport_name value verify_mode version_number warn_message_delay
warn_message_recipient warn_message_recipients warnmsg_delay warnmsg_recipient
warnmsg_recipients
"""

KNOWN = frozenset(_NAMES.split())

# Variables whose unset value prints as a number or yes/no rather than "".
_INT_ZERO = frozenset("""
acl_narg authentication_failed av_failed body_linecount body_zerocount
bounce_return_size_limit dkim_key_length event_defer_errno host_lookup_deferred
host_lookup_failed host_port inode localhost_number
max_received_linelength message_age message_body_size message_linecount
message_size mime_anomaly_level mime_content_size mime_is_coverletter
mime_is_multipart mime_is_rfc822 mime_part_count proxy_external_port
proxy_local_port rcpt_count rcpt_defer_count rcpt_fail_count received_count
received_time recipients_count regex_cachesize return_size_limit
runrc sender_host_port sending_port smtp_count_at_connection_start tls_bits
tls_certificate_verified tls_in_bits tls_in_certificate_verified tls_in_ocsp
tls_in_resumption tls_out_bits tls_out_certificate_verified tls_out_ocsp
tls_out_resumption tls_out_tlsa_usage
""".split())
# The interface a message came in on, when there was none (-be, -bm): Exim
# starts these at -1.
_UNKNOWN_PORT = frozenset(("interface_port", "received_port"))
_BOOL_NO = frozenset("""
message_smtputf8 prdr_requested proxy_session sender_helo_dnssec
sender_host_dnssec spf_result_guessed tls_out_dane
""".split())

# Debian's exim4 reports these; exim_py reports its own where they differ.
COMPILE_NUMBER = "1"


def is_known(name):
    """True when ``name`` is a variable Exim knows (``$acl_c...`` etc. included)."""
    if name in KNOWN:
        return True
    if name.startswith(("acl_c", "acl_m")) and not name[5:6].isalpha():
        return True
    if name.startswith("r_"):
        return True
    if name.startswith("auth") and name[4:].isdigit() and 1 <= int(name[4:]) <= 4:
        return True
    if name.startswith("regex") and name[5:].isdigit() and 1 <= int(name[5:]) <= 9:
        return True
    return False


def unknown_message(prefix, name):
    """Exim's text for an unknown variable, with its hint about ACL variables."""
    msg = prefix
    if name.startswith("acl_"):
        if name[4:5] in ("c", "m"):
            hint = ("6th character of a user-defined ACL variable must be a digit or underscore"
                    if name[5:6].isalpha() else "strict_acl_vars is set")
        else:
            hint = "user-defined ACL variables must start acl_c or acl_m"
        msg = "%s (%s)" % (msg, hint)
    return msg


def format_value(value):
    """A Python value as Exim prints the variable."""
    if value is None:
        return ""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return value if isinstance(value, str) else str(value)


def _tod(fmt):
    return lambda ctx: tod(fmt)


# the last tod_full text: (second, time.tzname, text); every message's Received:
# header asks for it, so it is formatted once a second
_last_full = (None, None, None)


def tod(which, now=None):
    """Exim's tod_stamp() formats of the current time."""
    global _last_full
    if now is None:
        now = time.time()
    if which == "full":
        # time.tzname is a new tuple after each time.tzset(), which alone
        # changes the zone localtime() uses
        second, zone = int(now), time.tzname
        last = _last_full
        if last[0] == second and last[1] is zone:
            return last[2]
        text = _tod_full(time.localtime(now))
        _last_full = (second, zone, text)
        return text
    lt = time.localtime(now)
    zone = time.strftime("%z", lt)
    if which == "log":
        return time.strftime("%Y-%m-%d %H:%M:%S", lt)
    if which == "logfile":
        return time.strftime("%Y%m%d", lt)
    if which == "epoch":
        return "%d" % int(now)
    if which == "epoch_l":
        return "%d" % int(now * 1000000)
    if which == "zone":
        return zone
    if which == "zulu":
        return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(now))
    if which == "bsdinbox":
        return "%s %2d %s" % (time.strftime("%a %b", lt), lt.tm_mday,
                              time.strftime("%H:%M:%S %Y", lt))
    return _tod_full(lt)


def _tod_full(lt):
    """tod_full, the RFC 5322 date: "Sat, 21 Nov 2026 17:39:34 +0000"."""
    return "%s, %d %s %s" % (time.strftime("%a", lt), lt.tm_mday,
                             time.strftime("%b %Y %H:%M:%S", lt), time.strftime("%z", lt))


def primary_hostname(ctx):
    name = ctx.main_option("primary_hostname")
    return name if name else socket.gethostname()


def qualify_domain(ctx):
    return ctx.main_option("qualify_domain") or primary_hostname(ctx)


def qualify_recipient(ctx):
    return ctx.main_option("qualify_recipient") or qualify_domain(ctx)


def _config_file(ctx):
    return getattr(ctx.config, "filename", None) or ctx.get("config_file") or ""


def _local_part_of(var):
    def get(ctx):
        address = format_value(ctx.get(var))
        return address.rpartition("@")[0] if "@" in address else address
    return get


def _domain_of(var):
    def get(ctx):
        address = format_value(ctx.get(var))
        return address.rpartition("@")[2] if "@" in address else ""
    return get


def _tainted(fn):
    """Values read from the message are tainted (see nodes.Tainted)."""
    def get(ctx):
        from exim_py.expand.nodes import Tainted
        value = fn(ctx)
        return Tainted(value) if value else value
    return get


def _message_body(end):
    def get(ctx):
        body = ctx.body or ""
        visible = ctx.main_option("message_body_visible", 500)
        part = body[-visible:] if end else body[:visible]
        if not ctx.main_option("message_body_newlines", False):
            part = part.replace("\n", " ")
        return part.replace("\0", " ")
    return get


def _message_headers(raw):
    def get(ctx):
        from exim_py.expand.headers import all_headers
        return all_headers(ctx, raw)
    return get


def _reply_address(ctx):
    from exim_py.expand.headers import find_header
    value = find_header(ctx, "reply-to:", raw=True)
    if value is not None:
        value = value.lstrip(" \t\n\r")
    if not value:
        value = find_header(ctx, "from:", raw=True)
    if value is None:
        return ""
    return value.lstrip(" \t\n\r").replace("\n", " ").rstrip(" \t\n\r")


def _load_average(ctx):
    try:
        return "%d" % int(os.getloadavg()[0] * 1000)
    except OSError:
        return "-1"


def _space(path_option, inodes):
    def get(ctx):
        path = ctx.main_option(path_option) or ctx.get(path_option) or "/"
        try:
            st = os.statvfs(path)
        except OSError:
            return "-1"
        if inodes:
            return "%d" % st.f_favail
        return "%d" % (st.f_bavail * st.f_frsize // 1024)
    return get


# name -> function(ctx) -> str, used when the context has no value.
BUILTIN = {
    "primary_hostname": primary_hostname,
    "qualify_domain": qualify_domain,
    "qualify_recipient": qualify_recipient,
    "exim_version": lambda ctx: ctx.main_option("exim_version", EXIM_COMPAT_VERSION),
    "version_number": lambda ctx: ctx.main_option("exim_version", EXIM_COMPAT_VERSION),
    "compile_number": lambda ctx: COMPILE_NUMBER,
    "pid": lambda ctx: "%d" % os.getpid(),
    "config_file": _config_file,
    "config_dir": lambda ctx: os.path.dirname(_config_file(ctx)),
    "spool_directory": lambda ctx: ctx.main_option("spool_directory", ""),
    "exim_path": lambda ctx: (ctx.main_option("exim_path") or shutil.which("exim_py")
                              or os.path.abspath(sys.argv[0])),
    "caller_uid": lambda ctx: "%d" % os.getuid(),
    "caller_gid": lambda ctx: "%d" % os.getgid(),
    "originator_uid": lambda ctx: "%d" % os.getuid(),
    "originator_gid": lambda ctx: "%d" % os.getgid(),
    "exim_uid": lambda ctx: "%d" % os.geteuid(),
    "exim_gid": lambda ctx: "%d" % os.getegid(),
    "initial_cwd": lambda ctx: os.getcwd(),
    "sender_address_domain": _domain_of("sender_address"),
    "sender_address_local_part": _local_part_of("sender_address"),
    "spf_guess": lambda ctx: ctx.main_option("spf_guess", ""),
    "message_body": _message_body(False),
    "message_body_end": _message_body(True),
    "message_headers": _tainted(_message_headers(False)),
    "message_headers_raw": _tainted(_message_headers(True)),
    "reply_address": _tainted(_reply_address),
    "load_average": _load_average,
    "spool_space": _space("spool_directory", False),
    "spool_inodes": _space("spool_directory", True),
    "log_space": _space("log_file_path", False),
    "log_inodes": _space("log_file_path", True),
    "tod_bsdinbox": _tod("bsdinbox"),
    "tod_epoch": _tod("epoch"),
    "tod_epoch_l": _tod("epoch_l"),
    "tod_full": _tod("full"),
    "tod_log": _tod("log"),
    "tod_logfile": _tod("logfile"),
    "tod_zone": _tod("zone"),
    "tod_zulu": _tod("zulu"),
}


def value_of(ctx, name):
    """The string value of known variable ``name`` in ``ctx``."""
    if name == "value":
        return ctx.lookup_value or ""
    if name == "item":
        return ctx.iterate_item or ""
    value = ctx.get(name)
    if value is not None:
        return format_value(value)
    if name.startswith(("acl_c", "acl_m")) and ctx.main_option("strict_acl_vars", False):
        from exim_py.errors import ExpansionError
        raise ExpansionError(unknown_message('unknown variable name "%s"' % name, name))
    fn = BUILTIN.get(name)
    if fn is not None:
        return fn(ctx)
    if name in _INT_ZERO:
        return "0"
    if name in _UNKNOWN_PORT:
        return "-1"
    if name in _BOOL_NO:
        return "no"
    return ""
