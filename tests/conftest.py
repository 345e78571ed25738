"""Test-session settings: the suite never reads or writes the user's kernel-decision cache."""

import os
import tempfile

# A per-session file, not ``off``: tests exercise the cache path, while the user's own decisions under
# ~/.cache/nsiter are neither read (a stale or hand-edited entry would change what runs) nor overwritten.
os.environ["NSITER_KERNEL_CACHE"] = os.path.join(
    tempfile.mkdtemp(prefix="nsiter-test-cache-"), "kernels.json"
)
