import sys

from nsiter.cli import main

sys.exit(main())
