"""`make bench`: runs every benchmark in this folder, one after another, then prints one table of their
figures against their targets, each marked met or missed."""

import runpy
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import TARGETS, report_target, targets_table  # noqa: E402

BENCHMARKS = ["partners", "pledges", "memoranda", "public"]

if __name__ == "__main__":
    for name in sys.argv[1:] or BENCHMARKS:
        print(f"== bench/{name}.py", flush=True)
        sys.argv = [str(HERE / f"{name}.py")]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except Exception:  # one benchmark failing must not hide the others' figures
            traceback.print_exc()
            report_target(name, "the benchmark ran", "it failed (see above)", "it runs", False)
    print("\n== all targets\n" + targets_table(TARGETS), flush=True)
