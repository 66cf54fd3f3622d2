"""Import + first step in a fresh process: with an empty kernel cache, and cached."""

import os
import subprocess
import sys
import tempfile

from numba_adam.bench import FIRST_STEP


class FirstStep:
    timeout = 120
    params = (["cold", "cached"],)
    param_names = ["cache"]

    def setup(self, cache):
        self.dir = tempfile.mkdtemp()
        self.env = dict(os.environ, NUMBA_CACHE_DIR=self.dir)
        if cache == "cached":
            subprocess.run([sys.executable, "-c", FIRST_STEP], env=self.env, check=True,
                           capture_output=True)

    def track_first_step_seconds(self, cache):
        out = subprocess.run([sys.executable, "-c", FIRST_STEP], env=self.env, check=True,
                             capture_output=True, text=True).stdout
        return float(out.strip().splitlines()[-1])

    track_first_step_seconds.unit = "seconds"
