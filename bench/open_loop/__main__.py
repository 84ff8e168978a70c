import sys

from bench.open_loop.run import main

sys.exit(main())
