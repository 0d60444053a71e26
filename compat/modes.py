"""The modes a library's suite runs in, as the pytest arguments that select each."""

from __future__ import annotations

#: The plugin's pytest11 entry-point name (pyproject.toml), for ``-p no:NAME``.
PLUGIN_ENTRY_POINT = "asyncspec"
#: Exploration's seed is fixed so that two runs of the matrix explore the same
#: schedules and a difference found once can be found again.
EXPLORE_SEED = 1

#: Mode name -> arguments added to every pytest run of that mode.  The first
#: one is the baseline that every other mode is compared with.
MODES: dict[str, tuple[str, ...]] = {
    "none": ("-p", f"no:{PLUGIN_ENTRY_POINT}"),
    "installed": (),
    "virtual": ("-o", "asyncspec_clock=virtual"),
    "gate": ("-o", "asyncspec_max_blocking=0.05"),
    "trace": ("-o", "asyncspec_trace=on"),
    "leaks": ("-o", "asyncspec_leaks=warn"),
    "explore": ("-o", "asyncspec_schedules=20", "-o", f"asyncspec_seed={EXPLORE_SEED}"),
}
BASELINE = "none"
