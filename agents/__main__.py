"""``python -m talbench.agents --listen ADDR:PORT --token-file FILE``"""

import sys

from talbench.agents.main import main

sys.exit(main())
