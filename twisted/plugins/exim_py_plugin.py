"""twistd dropin: ``twistd exim_py`` runs exim_py's daemon (see exim_py/tap.py)."""

from twisted.application.service import ServiceMaker

exim_py = ServiceMaker("exim_py", "exim_py.tap", "exim_py mail transfer agent (Exim-compatible)", "exim_py")
