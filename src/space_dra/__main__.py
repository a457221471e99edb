import sys

from space_dra.cli import main

sys.exit(main())
