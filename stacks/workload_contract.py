"""The names and ports the deployed workload answers to, for the stacks that create it and for
imctl's day-2 code that finds it again (repoints the Secret, scales the Deployment, reads the
digest). One home, so the two cannot drift apart.

Standard library only: a day-2 command must not load Pulumi (tests/cloud/test_gcp.py checks it
in a fresh interpreter).
"""

from __future__ import annotations

from typing import Final

# The database every cloud creates for the server, and the user it connects as.
DB_NAME: Final = "im"
DB_USER: Final = "im"
DB_PORT: Final = 5432

# The workload's Secret: the server reads its database URL and admin token from these keys.
SECRET_NAME: Final = "im-server"
SECRET_DB_URL_KEY: Final = "database-url"
SECRET_ADMIN_TOKEN_KEY: Final = "admin-token"

DEPLOYMENT_NAME: Final = "im-server"
HTTP_PORT: Final = 8080
TLS_PORT: Final = 8443
