"""Generated credentials shared by every region: the DB password, the JWT key, the admin token,
and the NATS passwords (im-server's login, and the one NATS servers use between themselves).

One set for the whole stack, so a client token minted in the primary stays valid after failover.
RandomPassword marks its result secret; everything derived from it stays secret.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random as random


@dataclass(frozen=True, slots=True)
class AppSecretsArgs:
    provider: pulumi.ProviderResource


class AppSecrets(pulumi.ComponentResource):
    db_password: pulumi.Output[str]
    jwt_secret: pulumi.Output[str]
    admin_token: pulumi.Output[str]
    nats_password: pulumi.Output[str]
    nats_password_bcrypt: pulumi.Output[str]
    nats_route_password: pulumi.Output[str]

    def __init__(
        self, name: str, args: AppSecretsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:workload:AppSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        # No special characters: the password is embedded in a URL and RDS rejects '/', '@', '"'.
        db = random.RandomPassword(f"{name}-db-password", length=32, special=False, opts=child)
        jwt = random.RandomPassword(f"{name}-jwt-secret", length=48, special=False, opts=child)
        admin = random.RandomPassword(f"{name}-admin-token", length=40, special=False, opts=child)
        self.db_password = pulumi.Output.secret(db.result)
        self.jwt_secret = pulumi.Output.secret(jwt.result)
        self.admin_token = pulumi.Output.secret(admin.result)
        nats = random.RandomPassword(f"{name}-nats-password", length=40, special=False, opts=child)
        route = random.RandomPassword(
            f"{name}-nats-route-password", length=40, special=False, opts=child
        )
        self.nats_password = pulumi.Output.secret(nats.result)
        # NATS checks im-server's password against this hash, so the NATS pods never hold it.
        self.nats_password_bcrypt = pulumi.Output.secret(nats.bcrypt_hash)
        # Routes must present the plain text, so this one is a separate secret.
        self.nats_route_password = pulumi.Output.secret(route.result)
        self.register_outputs({})
