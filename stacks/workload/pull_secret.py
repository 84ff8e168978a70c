"""A docker-registry Secret for registries the nodes cannot authenticate to by themselves
(ACR Personal Edition): the login the stack pushed with, for the pods to pull with."""

from __future__ import annotations

import base64
import json
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from stacks.image import PullCredentials

PULL_SECRET_NAME: Final = "im-server-registry"


def docker_config_json(server: str, username: str, password: str) -> str:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps(
        {"auths": {server: {"username": username, "password": password, "auth": auth}}}
    )


def pull_secret(
    name: str,
    namespace: str,
    credentials: PullCredentials,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret:
    config: pulumi.Output[str] = pulumi.Output.all(
        credentials.server, credentials.username, credentials.password
    ).apply(lambda v: docker_config_json(str(v[0]), str(v[1]), str(v[2])))
    docker_config: pulumi.Output[str] = pulumi.Output.secret(config)
    return k8s.core.v1.Secret(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=PULL_SECRET_NAME,
            namespace=namespace,
            labels={"app.kubernetes.io/part-of": "imctl"},
        ),
        type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": docker_config},
        opts=opts,
    )
