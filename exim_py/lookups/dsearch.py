"""The dsearch lookup: is there a directory entry with this name?

Options (spec "File and database lookups", dsearch): ``ret=full`` returns
the whole path instead of the key; ``filter=file|dir|subdir`` accepts only
entries of that type (subdir excludes ``.`` and ``..``); ``key=path`` allows
a key of several path components, never ``..``.
"""

import os
import stat

from exim_py.lookups import defer, open_error


class Lookup:
    single_key = True

    def open_check(self, directory):
        """Fail as opening ``directory`` for a directory search fails."""
        if not os.path.isdir(directory):
            try:
                os.listdir(directory)
            except OSError as e:
                raise open_error(directory, "directory search", e)

    def find(self, directory, key, options, ctx):
        self.open_check(directory)
        if options.get("key") == "path":
            if ".." in key.split("/"):
                raise defer("key for dsearch lookup contains a dotdot: %s" % key)
        elif "/" in key:
            raise defer("key for dsearch lookup contains a slash: %s" % key)
        path = os.path.join(directory, key)
        try:
            st = os.lstat(path)
        except (OSError, ValueError):
            return None
        wanted = options.get("filter")
        if wanted == "file" and not stat.S_ISREG(st.st_mode):
            return None
        if wanted in ("dir", "subdir") and not stat.S_ISDIR(st.st_mode):
            return None
        if wanted == "subdir" and key in (".", ".."):
            return None
        return path if options.get("ret") == "full" else key
