"""Test-session settings: decisions never depend on timing, and the user's kernel-decision cache is untouched."""

import os
import tempfile

# Kernel decisions by the rule table (nsiter.kernels.rule_choice), the same on every machine; the tests of
# the probe turn tuning on and inject their timings.
os.environ["NSITER_TUNE"] = "off"
# A per-session file, not ``off``: tests exercise the cache path, while the user's own decisions under
# ~/.cache/nsiter are neither read (a stale or hand-edited entry would change what runs) nor overwritten.
os.environ["NSITER_KERNEL_CACHE"] = os.path.join(
    tempfile.mkdtemp(prefix="nsiter-test-cache-"), "kernels.json"
)
