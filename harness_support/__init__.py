"""What the proof harnesses (``conformance`` and ``compat``) share.

Both start other interpreters that may hang or leave children behind; the
helpers here bound such a run and clean up after it.  Neither harness is part
of the installed plugin.
"""
