from carecall.cli import main

raise SystemExit(main())
