"""Exim's run time configuration file: ``load(path, macros) -> Config``.

See HACKING.rst ("Configuration") for what a Config holds, and the modules
here for each step: reader.py (lines, macros, .include, .ifdef), options.py
(option types and tables), main_options.py and generic_options.py (the
tables), loader.py (sections), acl_syntax.py, retry_rewrite.py, show.py
(-bP and -bV).
"""

from exim_py.config.loader import Config, DriverConfig, NamedList, load, load_collecting
from exim_py.config.acl_syntax import Acl, AclItem, AclStatement
from exim_py.config.retry_rewrite import RetryRule, RewriteRule

__all__ = ["load", "load_collecting", "Config", "DriverConfig", "NamedList", "Acl",
           "AclStatement", "AclItem", "RetryRule", "RewriteRule"]
