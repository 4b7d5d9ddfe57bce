import sys

from tracklayer.cli import main

sys.exit(main())
