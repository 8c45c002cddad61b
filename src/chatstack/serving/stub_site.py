"""Copied into the assembled python-backend folder as `chatstack_site.py`.

The python-backend stub embeds an *isolated* interpreter: it ignores
PYTHONPATH, so the packages of chatstack's environment are invisible to
models. That backend folder is on the stub's sys.path, so each adapter's first
import is `import chatstack_site`, which puts the directories the launcher
passed in CHATSTACK_SITE_DIRS in front of sys.path (processing their .pth
files, which is how an editable install of chatstack is found).
"""

import os
import site
import sys


def _activate() -> None:
    for directory in os.environ.get("CHATSTACK_SITE_DIRS", "").split(os.pathsep):
        if not directory or directory in sys.path:
            continue
        before = list(sys.path)
        site.addsitedir(directory)
        added = [p for p in sys.path if p not in before]
        sys.path[:] = added + before


_activate()
