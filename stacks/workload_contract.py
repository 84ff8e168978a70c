"""What the stacks deploy and imctl's day-2 code relies on: the names and ports the workload
answers to (to repoint its Secret, scale its Deployment, read its digest) and the replica lag
the stacks alarm on. One home, so the two cannot drift apart.

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
# Signs the users' tokens: the nodes verify with it, `imctl token --cloud X` mints with it.
SECRET_JWT_KEY: Final = "jwt-secret"

DEPLOYMENT_NAME: Final = "im-server"
HTTP_PORT: Final = 8080
TLS_PORT: Final = 8443

# The standby lag (seconds) the stacks alarm on: the data an unplanned failover would lose. A
# planned switchover starts only when the standby is at most this far behind.
REPLICA_LAG_ALARM_SECONDS: Final = 30
