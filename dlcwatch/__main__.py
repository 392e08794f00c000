import sys

from dlcwatch.cli import main

sys.exit(main())
