from dlstudies.cli import main

raise SystemExit(main())
