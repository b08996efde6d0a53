"""The accept router: accepts every address that passes its preconditions
(spec chapter "The accept router").  It has no private options; the generic
``transport`` option says where the address goes."""

from exim_py.config.options import OptionTable
from exim_py.delivery.address import RouterResult, OK
from exim_py.routers.base import RouterBase

OPTIONS = OptionTable()

# Deliveries through accept are logged in the local style (spec: log_as_local).
GENERIC_DEFAULTS = {"log_as_local": True}


def validate(dconf):
    """Exim refuses an accept router without a transport when it starts."""
    if dconf.options["transport"] is None and not dconf.options["verify_only"]:
        from exim_py.errors import ConfigError
        raise ConfigError("%s router:\n  a transport is required for this router" % dconf.name)


class Router(RouterBase):
    """driver = accept"""

    def route(self, addr, ctx):
        failed = self.set_transport(addr, ctx)
        if failed is not None:
            return failed
        return RouterResult(OK)
