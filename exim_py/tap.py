"""``twistd exim_py``: the same service tree as ``exim_py -bd``.

    twistd -n exim_py -C /etc/exim_py/exim.conf [-D NAME=value] [--listen 2525] [--queue 30m]

The options mirror Exim's command line (-C, -D, -oX, -q<time>); twistd
itself handles the pid file (--pidfile), logging and daemonising.
"""

from twisted.python import usage

from exim_py.cli import Invocation, parse_time
from exim_py.errors import UsageError


class Options(usage.Options):
    synopsis = "[-C file] [-D NAME=value ...] [--listen list] [--queue time]"
    longdesc = "Run exim_py's SMTP daemon (and queue runner) under twistd."

    optParameters = [
        ["config", "C", None, "configuration file (as exim_py -C)"],
        ["listen", "X", None, "ports / interfaces to listen on (as -oX)"],
        ["queue", "q", None, "run the queue at this interval, e.g. 30m (as -q30m)"],
    ]

    def __init__(self):
        super().__init__()
        self["macros"] = {}

    def opt_D(self, spec):
        """Define a configuration macro NAME=value (as exim_py -D); may be repeated."""
        name, _, value = spec.partition("=")
        self["macros"][name.strip()] = value.strip()

    opt_define = opt_D

    def postOptions(self):
        if self["queue"]:
            try:
                parse_time(self["queue"])
            except UsageError as e:
                raise usage.UsageError(str(e))


def invocation(options):
    """The Invocation that ``exim_py -bdf`` would have made from the same settings."""
    inv = Invocation()
    inv.mode, inv.mode_flag = "daemon", "-bdf"
    inv.daemon_foreground = True
    inv.config_file = options["config"]
    inv.macros = dict(options["macros"])
    inv.listen = options["listen"]
    if options["queue"]:
        inv.queue_interval = parse_time(options["queue"])
    return inv


def makeService(options):
    from exim_py.daemon import build_service, load_config
    inv = invocation(options)
    return build_service(load_config(inv), inv)
