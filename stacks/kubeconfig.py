"""Kubeconfig documents for the clusters, built from their outputs.

EKS and GKE kubeconfigs carry no credential: they name the cloud CLI plugin that mints a
short-lived token (``aws eks get-token``, ``gke-gcloud-auth-plugin``), so whoever runs
``pulumi up`` or imctl needs that CLI and their own cloud login. ACK returns a kubeconfig with a
client certificate instead. All of them are exported as secrets all the same.
"""

from __future__ import annotations

import json
from typing import Any


def _document(name: str, server: str, ca_data: str, user: dict[str, Any]) -> str:
    # JSON is valid YAML, and the Kubernetes provider and kubectl both accept it.
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {"server": server, "certificate-authority-data": ca_data},
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
            "users": [{"name": name, "user": user}],
        },
        indent=2,
        sort_keys=True,
    )


def eks(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    return _document(
        f"eks-{region}-{cluster_name}",
        endpoint,
        ca_data,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "aws",
                "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region],
                "interactiveMode": "Never",
            }
        },
    )


def gke(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    return _document(
        f"gke-{region}-{cluster_name}",
        f"https://{endpoint}",
        ca_data,
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "gke-gcloud-auth-plugin",
                "provideClusterInfo": True,
                "interactiveMode": "Never",
            }
        },
    )
