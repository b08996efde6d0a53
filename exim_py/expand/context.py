"""The state one expansion runs against: variables, headers, $0..$9, $value.

Every part of exim_py that expands strings builds (or reuses) one
ExpandContext: the SMTP side fills the ``$sender_host_address`` family, the
delivery side ``$local_part``/``$domain`` and so on.  A variable's value may
be a callable taking no arguments; it is called the first time the variable
is used (a reverse DNS lookup for ``$sender_host_name``, say) and its result
kept.
"""


class ExpandContext:
    """Variables and message data for expansions (see HACKING.rst)."""

    def __init__(self, config=None, variables=None, headers=None, body=None,
                 first_delivery=True, queue_running=False):
        self.config = config
        self.variables = variables if variables is not None else {}
        self.headers = headers if headers is not None else []
        self.body = body                  # message body text, for $message_body
        self.first_delivery = first_delivery
        self.queue_running = queue_running
        # $0..$n from the last regex match or partial lookup ("expand_nstring").
        self.numeric = []
        # $value and $item ("lookup_value", "iterate_item" in Exim).
        self.lookup_value = None
        self.iterate_item = None
        # One cache per context: the same lookup in one message is done once.
        self.lookup_cache = {}
        # Items that may not be used here (filters: ${run}, ${readfile} ...).
        self.forbid = frozenset()
        # Exim's address parser keeps two flags between expansions: an
        # unfinished "group:" (parse_found_group), and whether group syntax is
        # allowed (parse_allow_group, which the end of a group turns on).
        self.parse_found_group = False
        self.parse_allow_group = False
        # A header variable whose name took a '}' found nothing (Exim's
        # malformed_header): syntax errors then hint at a missing colon.
        # A nested expansion clears it, as in Exim.
        self.malformed_header = False
        self.nested_expansion = False
        self.expansion_depth = 0

    def get(self, name, default=None):
        """The value of variable ``name`` (lazy values computed once)."""
        try:
            value = self.variables[name]
        except KeyError:
            return default
        if callable(value):
            value = value()
            self.variables[name] = value
        return value

    def set(self, name, value):
        self.variables[name] = value

    def unset(self, name):
        self.variables.pop(name, None)

    def main_option(self, name, default=None):
        """A main configuration option, or ``default`` without a configuration."""
        if self.config is None:
            return default
        try:
            value = self.config.main[name]
        except (KeyError, AttributeError):
            return default
        return default if value is None else value
