from dlcwatch.worker.job import main

raise SystemExit(main())
