"""`make bench`: runs every benchmark in this folder, one after another."""

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

BENCHMARKS = ["partners", "pledges", "memoranda", "public"]

if __name__ == "__main__":
    for name in sys.argv[1:] or BENCHMARKS:
        print(f"== bench/{name}.py", flush=True)
        sys.argv = [str(HERE / f"{name}.py")]
        runpy.run_path(sys.argv[0], run_name="__main__")
