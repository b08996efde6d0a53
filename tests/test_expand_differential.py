"""exim_py -be against real Exim's -be, string by string.

Every string in tests/expand_cases.py is expanded by one ``exim4 -be``
process and one ``exim_py -be`` process with the same configuration and
fixture files; the outputs must match exactly.  One test per group, so a
failure names the group and lists every string whose output differs.
"""

import atexit
import os
import re
import socket
import threading

from twisted.trial import unittest

from tests import expand_cases
from tests.support.peers import RealExim, runners

_MARK = "@@@%d@@@"
_MARK_RE = re.compile(r"^@@@(\d+)@@@\n", re.M)
_runs = {}


def _setup():
    """Write the configuration and fixtures once; the RealExim oracle."""
    if "exim" not in _runs:
        exim = RealExim()
        conf = exim.write_config(expand_cases.CONFIG)
        for name, text in expand_cases.FIXTURES.items():
            path = os.path.join(exim.dir, name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o644)
        message = os.path.join(exim.dir, "message")
        with open(message, "w") as f:
            f.write(expand_cases.MESSAGE)
        os.chmod(message, 0o644)
        _runs["exim"] = (exim, conf, message)
        atexit.register(exim.cleanup)
    return _runs["exim"]


def _run(which, args, input_text, conf):
    """(exit status, stdout as one character per byte) of exim4 (``which``
    0) or exim_py (1) with ``args``."""
    exim, default, _ = _setup()
    data = input_text.encode("latin-1") if input_text is not None else None
    proc = runners(exim, text=False, timeout=120)[which](conf or default, args, data)
    return proc.returncode, proc.stdout.decode("latin-1")


def real_exim(args, input_text=None, conf=None):
    return _run(0, args, input_text, conf)


def our_exim(args, input_text=None, conf=None):
    return _run(1, args, input_text, conf)


def _split(output, count):
    """The text each marked case produced, by case number."""
    pieces = _MARK_RE.split(output)
    results = {}
    for k in range(1, len(pieces) - 1, 2):
        text = pieces[k + 1]
        results[int(pieces[k])] = text[:-1] if text.endswith("\n") else text
    return [results.get(k) for k in range(count)]


def _run_both(key, cases, extra_args=(), conf=None):
    """(exim outputs, exim_py outputs) for ``cases``, one process each."""
    if key in _runs:
        return _runs[key]
    exim, _, message = _setup()
    args = []
    for k, case in enumerate(cases):
        args += [_MARK % k, case]
    common = ["-DFX=" + exim.dir] + list(extra_args) + ["-be"] + args
    real_rc, real = real_exim(common, conf=conf)
    our_rc, ours = our_exim(common, conf=conf)
    if our_rc != real_rc:
        raise AssertionError("exit status %d, Exim's %d" % (our_rc, real_rc))
    _runs[key] = (_split(real, len(cases)), _split(ours, len(cases)))
    return _runs[key]


def _all_cases():
    cases = []
    for _, group in expand_cases.GROUPS:
        cases += group
    return cases


class ExpandDifferentialTests(unittest.TestCase):
    """Each group of expansion strings gives Exim's output, byte for byte."""

    def check_group(self, name, group, key="all", cases=None, extra_args=()):
        first = 0
        if cases is None:
            cases = _all_cases()
            for group_name, strings in expand_cases.GROUPS:
                if group_name == name:
                    break
                first += len(strings)
        real, ours = _run_both(key, cases, extra_args)
        mismatches = []
        for k in range(first, first + len(group)):
            if real[k] != ours[k]:
                mismatches.append("%r\n   exim:    %r\n   exim_py: %r" % (cases[k], real[k], ours[k]))
        self.assertEqual(mismatches, [], "%d of %d %s differ:\n%s"
                         % (len(mismatches), len(group), name, "\n".join(mismatches)))

    def test_literals(self):
        """Literal text, backslash escapes, \\N...\\N and bare $ and braces."""
        self.check_group("literals", expand_cases.LITERALS)

    def test_variables(self):
        """Variables, ${name}, ACL variables and unknown-variable errors."""
        self.check_group("variables", expand_cases.VARIABLES)

    def test_operators(self):
        """Every operator, its _N arguments, and its error texts."""
        self.check_group("operators", expand_cases.OPERATORS)

    def test_items(self):
        """Items with braced arguments: lookups, extract, sg, run, map..."""
        self.check_group("items", expand_cases.ITEMS)

    def test_conditions(self):
        """${if} with every condition, negation, and/or, forced failure."""
        self.check_group("conditions", expand_cases.CONDITIONS)

    def test_lists(self):
        """List separators, doubling and quoting in list items."""
        self.check_group("lists", expand_cases.LISTS)

    def test_errors(self):
        """Syntax errors: the same message as Exim, found in the same order."""
        self.check_group("errors", expand_cases.ERRORS)

    def test_semantics(self):
        """Branches not taken, $value and $1 scoping, sg matching, numeric edge cases."""
        self.check_group("semantics", expand_cases.SEMANTICS)

    def test_more(self):
        """Lookups in lists and items, ${run} argument splitting, RFC 2822 addresses."""
        self.check_group("more", expand_cases.MORE)

    def test_regex(self):
        """Regular expressions: POSIX classes, \\Q..\\E, named groups, anchors, flags."""
        self.check_group("regex", expand_cases.REGEX)

    def test_address_mix(self):
        """Generated address strings in sequence: the parser state Exim keeps between them."""
        self.check_group("address_mix", expand_cases.ADDRESS_MIX)

    def test_prvscheck(self):
        """${prvscheck} on plain and prvs-signed addresses, and its variables."""
        self.check_group("prvscheck", expand_cases.PRVSCHECK)

    def test_headers(self):
        """Header and body variables over a message read with -bem."""
        _, _, message = _setup()
        self.check_group("headers", expand_cases.HEADERS, key="headers",
                         cases=expand_cases.HEADERS, extra_args=["-bem", message])

    def test_host_and_sender(self):
        """Variables set by -oMa, -oMs, -oMr and -f; operators on 8-bit data."""
        self.check_group("host", expand_cases.HOST, key="host", cases=expand_cases.HOST,
                         extra_args=expand_cases.HOST_ARGS)

    def test_om_options(self):
        """-oMa/-oMi with ports, -oMaa/-oMai/-oMas, -oMt and -oMr."""
        self.check_group("om", expand_cases.OM, key="om", cases=expand_cases.OM,
                         extra_args=expand_cases.OM_ARGS)

    def test_local_caller(self):
        """The same strings for a local caller: $authenticated_id and friends."""
        self.check_group("local", expand_cases.HOST, key="local", cases=expand_cases.HOST)

    def test_case_count(self):
        """The table covers at least 400 strings (the acceptance criterion)."""
        total = len(_all_cases()) + len(expand_cases.HEADERS) + len(expand_cases.HOST)
        self.assertGreaterEqual(total, 400)


class ExpandOptionTests(unittest.TestCase):
    """Main options that change expansions: strict_acl_vars, print_topbitchars,
    headers_charset, keep_environment / add_environment."""

    def test_options(self):
        """The same strings under a configuration that sets those options."""
        exim, _, message = _setup()
        conf = exim.write_config(expand_cases.OPTIONS_CONFIG, name="options.conf")
        real, ours = _run_both("options", expand_cases.OPTIONS, ["-bem", message], conf=conf)
        self.assertEqual(ours, real)


class ExpandStdinTests(unittest.TestCase):
    """-be without arguments reads lines from standard input, as Exim does."""

    def test_stdin_dialogue(self):
        """Prompts, continuation lines, macro definitions and the final newline."""
        text = ("plain\n${uc:x}\\\n   y\n\n$nosuch\nMYMAC = macro value\n"
                "[MYMAC]\n${if eq{a}{a}\\\n  {yes}{no}}\n  leading spaces kept  \n"
                "Not a definition\nMYMACRO2 = two\n<MYMACRO2>\n")
        self.assertEqual(our_exim(["-be"], text), real_exim(["-be"], text))

    def test_long_lines(self):
        """Lines longer than Exim's 1024-byte buffer are read in pieces, as Exim does."""
        text = "x" * 1500 + "\n${lc:" + "A" * 1100 + "}\n"
        self.assertEqual(our_exim(["-be"], text)[1], real_exim(["-be"], text)[1])

    def test_long_argument(self):
        """An argument over 256 bytes stops -be with status 1, after the earlier ones."""
        args = ["-be", "first", "a" * 257, "never"]
        self.assertEqual(our_exim(args), real_exim(args))

    def test_empty_input(self):
        """End of input at once: one prompt and a newline."""
        self.assertEqual(our_exim(["-be"], ""), real_exim(["-be"], ""))


class _Responder:
    """A Unix and a TCP socket that answer each connection with what they read."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "sock")
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.path)
        os.chmod(self.path, 0o777)      # real Exim connects as its own user
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        for srv in (self.unix, self.tcp):
            srv.listen(5)
            threading.Thread(target=self.serve, args=(srv,), daemon=True).start()

    def serve(self, srv):
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                data = b""
                try:
                    while True:
                        chunk = conn.recv(1024)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                conn.sendall(self.answer(data))

    def answer(self, request):
        return b"got:" + request + b"\nline2\n"

    def close(self):
        self.unix.close()
        self.tcp.close()
        os.unlink(self.path)


class _CountingResponder(_Responder):
    """Answers each connection with its number (from 1 since ``reset``)."""

    def __init__(self, directory):
        self.count = 0
        super().__init__(directory)

    def answer(self, request):
        self.count += 1
        return b"answer-%d\n" % self.count


class ReadSocketTests(unittest.TestCase):
    """${readsocket} against Unix and TCP sockets, with Exim's results and errors."""

    def test_readsocket(self):
        """Requests, end-of-line replacement, options and failure strings."""
        exim, _, _ = _setup()
        responder = _Responder(exim.dir)
        self.addCleanup(responder.close)
        sock, port = responder.path, responder.port
        cases = [
            "${readsocket{%s}{hello}}" % sock,
            "${readsocket{%s}{hello}{5s}{|}}" % sock,
            "${readsocket{%s}{}}" % sock,
            "${readsocket{inet:127.0.0.1:%d}{hi}}" % port,
            "${readsocket{inet:127.0.0.1:%d}{hi}{3s}{}}" % port,
            "${readsocket{%s.none}{hello}}" % sock,
            "${readsocket{%s.none}{hello}{5s}{}{fallback}}" % sock,
            "${readsocket{x}}",
        ]
        real, ours = _run_both("readsocket", cases)
        self.assertEqual(ours, real)

    def test_readsocket_cache(self):
        """cache=yes: a request already answered by a socket is not sent to it
        again; another request, another socket or no cache=yes connects."""
        exim, _, _ = _setup()
        responder = _CountingResponder(exim.dir)
        self.addCleanup(responder.close)
        sock = responder.path
        cases = [
            "${readsocket{%s}{q1}{5s:cache=yes}}" % sock,
            "${readsocket{%s}{q1}{5s:cache=yes}}" % sock,
            "${readsocket{%s}{q2}{5s:cache=yes}}" % sock,
            "${readsocket{%s.none}{q1}{5s:cache=yes}{}{failed}}" % sock,
            "${readsocket{%s}{q1}{5s:cache=yes}{|}}" % sock,
            "${readsocket{%s}{q1}{5s}}" % sock,
        ]
        args = []
        for k, case in enumerate(cases):
            args += [_MARK % k, case]
        outputs = []
        for run in (real_exim, our_exim):
            responder.count = 0
            rc, out = run(["-DFX=" + exim.dir, "-be"] + args)
            outputs.append(_split(out, len(cases)))
        self.assertEqual(outputs[1], outputs[0])
        # The second request was answered from the cache.
        self.assertEqual(outputs[1][:2], ["answer-1\n", "answer-1\n"])
