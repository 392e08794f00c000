from dlcwatch.worker.job import main

if __name__ == "__main__":  # not when a QC drawing process ("spawn") imports this module
    raise SystemExit(main())
