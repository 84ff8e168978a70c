"""The GCS bucket for logical dumps and snapshot manifests: versioned, uniform bucket-level
access (no per-object ACLs), public access prevention enforced, soft delete, and a lifecycle
into colder classes. Objects are encrypted at rest by GCS with Google-managed keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

SOFT_DELETE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class BackupBucketArgs:
    provider: pulumi.ProviderResource
    location: str
    noncurrent_days: int = 90
    # True only while imctl destroy tears the stack down: a bucket with objects in it cannot
    # be deleted otherwise.
    force_destroy: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


class BackupBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: BackupBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:gcp:BackupBucket", name, None, opts)
        rule = gcp.storage.BucketLifecycleRuleArgs
        action = gcp.storage.BucketLifecycleRuleActionArgs
        condition = gcp.storage.BucketLifecycleRuleConditionArgs
        # No explicit name: Pulumi appends a random suffix, and bucket names are global.
        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            location=args.location.upper(),
            storage_class="STANDARD",
            force_destroy=args.force_destroy,
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            soft_delete_policy=gcp.storage.BucketSoftDeletePolicyArgs(
                retention_duration_seconds=SOFT_DELETE_SECONDS
            ),
            lifecycle_rules=[
                rule(
                    action=action(type="SetStorageClass", storage_class="NEARLINE"),
                    condition=condition(age=30, matches_storage_classes=["STANDARD"]),
                ),
                rule(
                    action=action(type="SetStorageClass", storage_class="COLDLINE"),
                    condition=condition(age=90, matches_storage_classes=["NEARLINE"]),
                ),
                rule(
                    action=action(type="Delete"),
                    condition=condition(
                        days_since_noncurrent_time=args.noncurrent_days, with_state="ARCHIVED"
                    ),
                ),
            ],
            labels=dict(args.labels),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        self.bucket_name = self.bucket.name
        self.register_outputs({"bucket": self.bucket_name})
