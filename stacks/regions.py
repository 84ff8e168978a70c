"""Regions each cloud offers for this stack, so a typo fails at config time, not mid-deploy.

The lists are the regions where the managed Kubernetes service and managed PostgreSQL both
exist; a region missing here can be added once someone has deployed there.
"""

from __future__ import annotations

from typing import Final

AWS_REGIONS: Final = frozenset(
    {
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "ca-central-1",
        "sa-east-1",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-east-1",
        "me-south-1",
        "me-central-1",
        "af-south-1",
        "il-central-1",
    }
)

GCP_REGIONS: Final = frozenset(
    {
        "us-central1",
        "us-east1",
        "us-east4",
        "us-east5",
        "us-south1",
        "us-west1",
        "us-west2",
        "us-west3",
        "us-west4",
        "northamerica-northeast1",
        "northamerica-northeast2",
        "southamerica-east1",
        "southamerica-west1",
        "europe-central2",
        "europe-north1",
        "europe-southwest1",
        "europe-west1",
        "europe-west2",
        "europe-west3",
        "europe-west4",
        "europe-west6",
        "europe-west8",
        "europe-west9",
        "europe-west10",
        "europe-west12",
        "asia-east1",
        "asia-east2",
        "asia-northeast1",
        "asia-northeast2",
        "asia-northeast3",
        "asia-south1",
        "asia-south2",
        "asia-southeast1",
        "asia-southeast2",
        "australia-southeast1",
        "australia-southeast2",
        "me-central1",
        "me-west1",
        "africa-south1",
    }
)

ALICLOUD_REGIONS: Final = frozenset(
    {
        "cn-hangzhou",
        "cn-shanghai",
        "cn-beijing",
        "cn-shenzhen",
        "cn-zhangjiakou",
        "cn-huhehaote",
        "cn-wulanchabu",
        "cn-qingdao",
        "cn-chengdu",
        "cn-guangzhou",
        "cn-heyuan",
        "cn-hongkong",
        "ap-southeast-1",
        "ap-southeast-3",
        "ap-southeast-5",
        "ap-southeast-6",
        "ap-southeast-7",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-south-1",
        "us-east-1",
        "us-west-1",
        "eu-central-1",
        "eu-west-1",
        "me-east-1",
        "me-central-1",
    }
)

REGIONS_BY_CLOUD: Final[dict[str, frozenset[str]]] = {
    "aws": AWS_REGIONS,
    "gcp": GCP_REGIONS,
    "alicloud": ALICLOUD_REGIONS,
}
