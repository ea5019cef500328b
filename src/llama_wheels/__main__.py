from llama_wheels.cli import main

raise SystemExit(main())
