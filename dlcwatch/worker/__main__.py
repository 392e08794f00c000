import logging
import os
import sys

from dlcwatch.worker.job import main

if __name__ == "__main__":  # not when a QC drawing process ("spawn") imports this module
    code = main()
    # Everything is written and closed (the result file last); skip the interpreter's teardown,
    # which takes 3-6 s here with DeepLabCut's thousands of modules loaded, all of it waiting
    # for nothing before the job's slot is free.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
