import sys

from msae.cli import main

sys.exit(main())
