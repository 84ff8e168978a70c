"""Pulumi mocks with plausible cloud answers, for offline plans and for the tests.

Every invoke the programs make has an answer here; any other invoke is recorded so the plan
fails loudly instead of running on an empty result. Resource outputs are the inputs plus what
the cloud would compute (ids, ARNs, endpoints, load balancer addresses), derived
deterministically from the resource's type and name, so two plans of one config are identical.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from typing import Any

from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks

ACCOUNT_ID = "123456789012"
ALIBABA_ACCOUNT_ID = "5123456789012345"
GCP_PROJECT = "imctl-plan"

Json = dict[str, Any]


def _hex(seed: str, length: int) -> str:
    out = ""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).hexdigest()
        counter += 1
    return out[:length]


def _ip(seed: str, first: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return f"{first}.{digest[0]}.{digest[1]}.{max(digest[2], 1)}"


def _uuid(seed: str) -> str:
    h = _hex(seed, 32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ca(seed: str) -> str:
    return base64.b64encode(f"-----BEGIN CERTIFICATE-----\nmock {seed}\n".encode()).decode()


def _autoname(args: MockResourceArgs, key: str = "name") -> str:
    given = args.inputs.get(key)
    return given if isinstance(given, str) and given else f"{args.name}-{_hex(args.name, 7)}"


def _provider_id(ref: str | None) -> str:
    return (ref or "").rsplit("::", 1)[-1]


_AWS_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:route53/healthCheck:HealthCheck": "",
}


class PlanMocks(Mocks):
    """Answers for the three clouds, Kubernetes and random; thread-safe (the mock monitor calls
    from an executor pool)."""

    def __init__(self, cloud: str) -> None:
        self.cloud = cloud
        self._lock = threading.Lock()
        self._provider_regions: dict[str, str] = {}
        self.unmocked_invokes: list[str] = []
        self.invokes: list[tuple[str, str | None]] = []
        self._calls: dict[str, Callable[[Json, str], Json]] = {
            "aws:index/getAvailabilityZones:getAvailabilityZones": self._aws_zones,
            "aws:index/getCallerIdentity:getCallerIdentity": self._aws_identity,
            "alicloud:index/getZones:getZones": self._ali_zones,
            "alicloud:index/getCallerIdentity:getCallerIdentity": self._ali_identity,
            "alicloud:cs/getClusterCredential:getClusterCredential": self._ack_credential,
            "aws:ecr/getAuthorizationToken:getAuthorizationToken": self._ecr_token,
            "gcp:organizations/getClientConfig:getClientConfig": self._gcp_client,
            "gcp:organizations/getProject:getProject": self._gcp_project,
        }

    # -- invokes -------------------------------------------------------------------------------

    def region_of_provider(self, ref: str | None) -> str | None:
        with self._lock:
            return self._provider_regions.get(_provider_id(ref))

    def call(self, args: MockCallArgs) -> Json:  # type: ignore[override]
        region = self.region_of_provider(args.provider) or ""
        with self._lock:
            self.invokes.append((args.token, region or None))
        handler = self._calls.get(args.token)
        if handler is None:
            with self._lock:
                self.unmocked_invokes.append(args.token)
            return {}
        return handler(args.args, region)

    @staticmethod
    def _aws_zones(_: Json, region: str) -> Json:
        names = [f"{region}{suffix}" for suffix in "abcd"]
        return {
            "id": region,
            "names": names,
            "zoneIds": [f"{region[:2]}{region[-1]}-az{i + 1}" for i in range(len(names))],
            "groupNames": [region],
            "state": "available",
        }

    @staticmethod
    def _aws_identity(_: Json, region: str) -> Json:
        return {
            "id": ACCOUNT_ID,
            "accountId": ACCOUNT_ID,
            "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/imctl-plan",
            "userId": "AIDAIMCTLPLANMOCK",
        }

    @staticmethod
    def _ecr_token(args: Json, region: str) -> Json:
        registry = str(args.get("registryId") or ACCOUNT_ID)
        password = "mock-ecr-" + _hex(f"ecr/{registry}/{region}", 32)
        return {
            "id": region,
            "registryId": registry,
            "userName": "AWS",
            "password": password,
            "authorizationToken": base64.b64encode(f"AWS:{password}".encode()).decode(),
            "proxyEndpoint": f"https://{registry}.dkr.ecr.{region}.amazonaws.com",
            "expiresAt": "2099-01-01T00:00:00Z",
            "region": region,
        }

    @staticmethod
    def _gcp_client(_: Json, region: str) -> Json:
        return {
            "id": GCP_PROJECT,
            "project": GCP_PROJECT,
            "region": region,
            "zone": f"{region}-a",
            "accessToken": "ya29.mock-" + _hex("gcp-token", 32),
        }

    @staticmethod
    def _gcp_project(args: Json, region: str) -> Json:
        project = str(args.get("projectId") or GCP_PROJECT)
        return {
            "id": f"projects/{project}",
            "projectId": project,
            "name": project,
            "number": str(int(_hex(project, 10), 16) % 10**12),
        }

    @staticmethod
    def _ali_identity(_: Json, region: str) -> Json:
        return {
            "id": ALIBABA_ACCOUNT_ID,
            "accountId": ALIBABA_ACCOUNT_ID,
            "arn": f"acs:ram::{ALIBABA_ACCOUNT_ID}:user/imctl-plan",
            "identityType": "RAMUser",
            "principalId": "imctl-plan",
        }

    @staticmethod
    def _ali_zones(_: Json, region: str) -> Json:
        ids = [f"{region}-{suffix}" for suffix in "abc"]
        return {
            "id": region,
            "ids": ids,
            "zones": [
                {
                    "id": zone,
                    "localName": zone,
                    "multiZoneIds": [],
                    "availableResourceCreations": ["VSwitch", "Rds", "Instance"],
                }
                for zone in ids
            ],
        }

    @staticmethod
    def _ack_credential(args: Json, region: str) -> Json:
        cluster_id = str(args.get("clusterId", "c-mock"))
        server = f"https://{_ip(cluster_id, 47)}:6443"
        kubeconfig = (
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: {cluster_id}\n  cluster:\n    server: {server}\n"
            f"    certificate-authority-data: {_ca(cluster_id)}\n"
            f"contexts:\n- name: {cluster_id}\n  context:\n    cluster: {cluster_id}\n"
            f"    user: {cluster_id}\ncurrent-context: {cluster_id}\n"
            f"users:\n- name: {cluster_id}\n  user:\n    client-certificate-data: {_ca('c')}\n"
            f"    client-key-data: {_ca('k')}\n"
        )
        return {
            "id": cluster_id,
            "clusterId": cluster_id,
            "clusterName": cluster_id,
            "kubeConfig": kubeconfig,
            "expiration": "2099-01-01T00:00:00Z",
            "certificateAuthorities": [],
        }

    # -- resources -----------------------------------------------------------------------------

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, Json]:
        if not args.custom and not args.typ.startswith("pulumi:providers:"):
            return "", {}
        if args.typ.startswith("pulumi:providers:"):
            return self._provider(args)
        region = self.region_of_provider(args.provider) or ""
        state: Json = dict(args.inputs)
        resource_id = f"{args.name}-{_hex(args.typ + args.name, 8)}"
        package = args.typ.split(":", 1)[0]
        handler = {
            "aws": self._aws,
            "gcp": self._gcp,
            "alicloud": self._alicloud,
            "kubernetes": self._kubernetes,
            "random": self._random,
            "docker-build": self._docker_build,
        }.get(package)
        if handler is not None:
            resource_id = handler(args, region, state) or resource_id
        return resource_id, state

    def _provider(self, args: MockResourceArgs) -> tuple[str, Json]:
        provider_id = _uuid(args.typ + args.name)
        region = args.inputs.get("region")
        if not isinstance(region, str) and args.typ == "pulumi:providers:kubernetes":
            # The program names Kubernetes providers k8s-<region>; kubeconfigs carry no region.
            region = args.name.removeprefix("k8s-")
        if isinstance(region, str):
            with self._lock:
                self._provider_regions[provider_id] = region
        return provider_id, dict(args.inputs)

    def _aws(self, args: MockResourceArgs, region: str, state: Json) -> str | None:
        typ, seed = args.typ, args.typ + args.name
        service = typ.split(":")[1].split("/")[0]
        if typ in _AWS_ID_PREFIX:
            return _AWS_ID_PREFIX[typ] + _hex(seed, 17)
        if typ == "aws:eks/cluster:Cluster":
            name = _autoname(args)
            state.update(
                name=name,
                arn=f"arn:aws:eks:{region}:{ACCOUNT_ID}:cluster/{name}",
                endpoint=f"https://{_hex(seed, 32).upper()}.gr7.{region}.eks.amazonaws.com",
                certificateAuthority={"data": _ca(name)},
                identities=[
                    {
                        "oidcs": [
                            {
                                "issuer": f"https://oidc.eks.{region}.amazonaws.com/id/"
                                f"{_hex(seed + '/oidc', 32).upper()}"
                            }
                        ]
                    }
                ],
            )
            return name
        if typ == "aws:eks/nodeGroup:NodeGroup":
            ng = _autoname(args, "nodeGroupName")
            state.update(nodeGroupName=ng, arn=f"arn:aws:eks:{region}:{ACCOUNT_ID}:nodegroup/{ng}")
            return f"{state.get('clusterName')}:{ng}"
        if typ == "aws:rds/instance:Instance":
            ident = _autoname(args, "identifier").lower()
            address = f"{ident}.{_hex(seed, 12)}.{region}.rds.amazonaws.com"
            state.update(
                identifier=ident,
                arn=f"arn:aws:rds:{region}:{ACCOUNT_ID}:db:{ident}",
                address=address,
                endpoint=f"{address}:5432",
                port=5432,
            )
            return ident
        if typ == "aws:kms/key:Key":
            key_id = _uuid(seed)
            state.update(keyId=key_id, arn=f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{key_id}")
            return key_id
        if typ == "aws:iam/role:Role":
            name = _autoname(args)
            state.update(name=name, arn=f"arn:aws:iam::{ACCOUNT_ID}:role/{name}")
            return name
        if typ == "aws:s3/bucket:Bucket":
            bucket = _autoname(args, "bucket")
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
            return bucket
        if typ == "aws:route53/zone:Zone":
            zone_id = "Z" + _hex(seed, 20).upper()
            state.update(
                zoneId=zone_id,
                nameServers=[f"ns-{i}.awsdns-{i:02d}.org" for i in range(1, 5)],
                arn=f"arn:aws:route53:::hostedzone/{zone_id}",
            )
            return zone_id
        if typ == "aws:ecr/repository:Repository":
            name = _autoname(args)
            state.update(
                name=name,
                registryId=ACCOUNT_ID,
                repositoryUrl=f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/{name}",
                arn=f"arn:aws:ecr:{region}:{ACCOUNT_ID}:repository/{name}",
            )
            return name
        if "name" not in state and typ.split(":")[-1] in {"SubnetGroup", "ParameterGroup"}:
            state["name"] = _autoname(args)
        state.setdefault("arn", f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{args.name}")
        return None

    def _gcp(self, args: MockResourceArgs, region: str, state: Json) -> str | None:
        typ, seed = args.typ, args.typ + args.name
        name = _autoname(args)
        project = str(state.get("project") or GCP_PROJECT)
        state.setdefault("name", name)
        if typ == "gcp:compute/network:Network":
            link = f"projects/{project}/global/networks/{name}"
            state.update(selfLink=f"https://www.googleapis.com/compute/v1/{link}")
            return link
        if typ == "gcp:compute/subnetwork:Subnetwork":
            return f"projects/{project}/regions/{state.get('region', region)}/subnetworks/{name}"
        if typ == "gcp:container/cluster:Cluster":
            state.update(
                endpoint=_ip(seed, 34),
                masterAuth={"clusterCaCertificate": _ca(name)},
                selfLink=f"https://container.googleapis.com/v1/projects/{project}/locations/"
                f"{state.get('location', region)}/clusters/{name}",
            )
            return f"projects/{project}/locations/{state.get('location', region)}/clusters/{name}"
        if typ == "gcp:sql/databaseInstance:DatabaseInstance":
            state.update(
                connectionName=f"{project}:{state.get('region', region)}:{name}",
                privateIpAddress=_ip(seed, 10),
                selfLink=f"https://sqladmin.googleapis.com/sql/v1beta4/projects/{project}/"
                f"instances/{name}",
            )
            return name
        if typ == "gcp:storage/bucket:Bucket":
            state.update(
                url=f"gs://{name}", selfLink=f"https://www.googleapis.com/storage/v1/b/{name}"
            )
            return name
        if typ == "gcp:artifactregistry/repository:Repository":
            repo_id = str(state.get("repositoryId") or name)
            location = str(state.get("location") or region)
            state.update(
                project=project,
                name=repo_id,
                registryUri=f"{location}-docker.pkg.dev/{project}/{repo_id}",
            )
            return f"projects/{project}/locations/{location}/repositories/{repo_id}"
        if typ == "gcp:serviceaccount/account:Account":
            email = f"{state.get('accountId')}@{project}.iam.gserviceaccount.com"
            state.update(email=email, name=f"projects/{project}/serviceAccounts/{email}")
            return str(state["name"])
        if typ == "gcp:dns/managedZone:ManagedZone":
            state.update(nameServers=[f"ns-cloud-a{i}.googledomains.com." for i in range(1, 5)])
            return f"projects/{project}/managedZones/{name}"
        return f"projects/{project}/{typ.split(':')[-1].lower()}s/{name}"

    def _alicloud(self, args: MockResourceArgs, region: str, state: Json) -> str | None:
        typ, seed = args.typ, args.typ + args.name
        if typ == "alicloud:vpc/network:Network":
            return "vpc-" + _hex(seed, 21)
        if typ == "alicloud:vpc/switch:Switch":
            return "vsw-" + _hex(seed, 21)
        if typ == "alicloud:cs/managedKubernetes:ManagedKubernetes":
            state.setdefault("name", _autoname(args))
            return "c" + _hex(seed, 32)
        if typ == "alicloud:cs/nodePool:NodePool":
            pool = "np" + _hex(seed, 30)
            state.update(nodePoolId=pool)
            return f"{state.get('clusterId')}:{pool}"
        if typ == "alicloud:rds/instance:Instance":
            instance_id = "pgm-" + _hex(seed, 18)
            state.update(connectionString=f"{instance_id}.pg.rds.aliyuncs.com", port="5432")
            return instance_id
        if typ == "alicloud:kms/key:Key":
            return _uuid(seed)
        if typ == "alicloud:oss/bucket:Bucket":
            return str(state.get("bucket"))
        if typ == "alicloud:dns/gtmInstance:GtmInstance":
            instance_id = "gtm-cn-" + _hex(seed, 12)
            state.setdefault("publicZoneName", f"{instance_id}.gtm-mock.com")
            return instance_id
        if typ == "alicloud:cr/namespace:Namespace":
            return str(state.get("name"))
        if typ == "alicloud:cr/repo:Repo":
            state["domainLists"] = [
                {
                    "public": f"registry.{region}.aliyuncs.com",
                    "internal": f"registry-internal.{region}.aliyuncs.com",
                    "vpc": f"registry-vpc.{region}.aliyuncs.com",
                }
            ]
            return f"{state.get('namespace')}/{state.get('name')}"
        if typ == "alicloud:ram/accessKey:AccessKey":
            state.update(secret=_hex(seed + "/secret", 30))
            return "LTAI" + _hex(seed, 20)
        if typ == "alicloud:dts/synchronizationInstance:SynchronizationInstance":
            return "dts" + _hex(seed, 12)
        return None

    def _kubernetes(self, args: MockResourceArgs, region: str, state: Json) -> str | None:
        metadata = state.setdefault("metadata", {})
        if isinstance(metadata, dict) and not metadata.get("name"):
            metadata["name"] = f"{args.name}-{_hex(args.name, 8)}"
        if args.typ == "kubernetes:core/v1:Service":
            spec = state.get("spec") or {}
            if spec.get("type") == "LoadBalancer":
                seed = f"{region}/{args.name}"
                ingress = (
                    {"hostname": f"a{_hex(seed, 31)}.elb.{region}.amazonaws.com"}
                    if self.cloud == "aws"
                    else {"ip": _ip(seed, 35 if self.cloud == "gcp" else 47)}
                )
                state["status"] = {"loadBalancer": {"ingress": [ingress]}}
        if isinstance(metadata, dict):
            ns = metadata.get("namespace")
            return f"{ns}/{metadata['name']}" if ns else str(metadata["name"])
        return None

    @staticmethod
    def _docker_build(args: MockResourceArgs, region: str, state: Json) -> str | None:
        if args.typ != "docker-build:index:Image":
            return None
        # The registry's answer to a push: one manifest digest, whatever the tags.
        digest = "sha256:" + _hex(f"image/{args.name}/{state.get('context')}", 64)
        tags = [t for t in state.get("tags") or [] if isinstance(t, str)]
        state.update(
            digest=digest,
            contextHash=_hex(f"context/{state.get('context')}", 64),
            ref=f"{tags[0].rsplit(':', 1)[0]}@{digest}" if tags else "",
        )
        return digest

    @staticmethod
    def _random(args: MockResourceArgs, region: str, state: Json) -> str | None:
        if args.typ == "random:index/randomPassword:RandomPassword":
            length = int(state.get("length", 32))
            state["result"] = _hex("secret/" + args.name, length)
            state["bcryptHash"] = "$2a$10$" + _hex("bcrypt/" + args.name, 53)
        return "none"
