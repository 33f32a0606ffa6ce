import sys

from counterfeit.cli import main

sys.exit(main())
