"""The passwd lookup: a user from the system password data (getpwnam).

The query is a user name; the result reads like an /etc/passwd line with
``*`` for the password: ``*:uid:gid:gecos:home:shell`` (spec "Query-style
lookup types", passwd).
"""

import pwd


class Lookup:
    single_key = False

    def find(self, source, query, options, ctx):
        try:
            pw = pwd.getpwnam(query)
        except (KeyError, ValueError):
            return None
        return "*:%d:%d:%s:%s:%s" % (pw.pw_uid, pw.pw_gid, pw.pw_gecos, pw.pw_dir, pw.pw_shell)
