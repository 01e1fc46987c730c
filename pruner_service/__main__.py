from pruner_service.cli import main

raise SystemExit(main())
