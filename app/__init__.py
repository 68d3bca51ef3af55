"""The lrm-robot application: its command line, the self-improvement loop, PPO and the operator app.

torch's OpenMP threads spin between parallel regions by default (OMP_WAIT_POLICY=active). On a machine
shared with other jobs, a spinning thread burns its time slice waiting for one that is descheduled:
behaviour cloning of the small actor-critic took 240-600 s instead of ~10-20 s at load ~5 on 2 cores.
Passive waiting keeps the same threads and the same numbers. libgomp reads the variable once, when torch is
first loaded, which is after this package is imported by the `lrm-robot` command; a user's own setting wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
