import sys

from orchestrator.cli._main import main

sys.exit(main())
