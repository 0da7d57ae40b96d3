"""docs/account-recovery.md: a server other than ``bastion serve`` hides the tokens of
recovery links in its access log (run by tests/unit/test_docs_snippets.py)."""

# --8<-- [start:filter]
import logging

import bastion.recovery

logging.getLogger("uvicorn.access").addFilter(bastion.recovery.TokenPathFilter())
# --8<-- [end:filter]
