from freelm_pruner_client.cli import main

raise SystemExit(main())
