import sys

from mast.cli.main import main

sys.exit(main())
