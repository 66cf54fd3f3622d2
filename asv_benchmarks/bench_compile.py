"""Import + first step in a fresh process: with an empty kernel cache, and cached."""

import os
import subprocess
import sys
import tempfile

from numba_adam.bench import FIRST_STEP


class FirstStep:
    """``state_bits``: each state format compiles its own kernel on first use."""

    timeout = 120
    params = (["cold", "cached"], [32, 16, 8])
    param_names = ["cache", "state_bits"]

    def setup(self, cache, state_bits):
        self.dir = tempfile.mkdtemp()
        self.env = dict(os.environ, NUMBA_CACHE_DIR=self.dir)
        self.command = [sys.executable, "-c", FIRST_STEP, str(state_bits)]
        if cache == "cached":
            subprocess.run(self.command, env=self.env, check=True, capture_output=True)

    def track_first_step_seconds(self, cache, state_bits):
        out = subprocess.run(self.command, env=self.env, check=True, capture_output=True,
                             text=True).stdout
        return float(out.strip().splitlines()[-1])

    track_first_step_seconds.unit = "seconds"
