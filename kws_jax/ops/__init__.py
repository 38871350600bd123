"""Pure-JAX signal ops: functions of arrays and explicit state, no globals, no I/O.

Each streaming op is `step(params, state, x) -> (state, y)` with a batch twin that
equals scanning the step.
"""
