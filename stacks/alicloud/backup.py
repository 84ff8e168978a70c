"""The OSS bucket for logical dumps and snapshot manifests: private ACL, public access blocked,
versioned, KMS server-side encryption, zone-redundant, and a lifecycle into colder classes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_alicloud as alicloud


@dataclass(frozen=True, slots=True)
class BackupBucketArgs:
    provider: pulumi.ProviderResource
    bucket_name: str
    noncurrent_days: int = 90
    # True only while imctl destroy tears the stack down: a bucket with objects (or old
    # versions of them) cannot be deleted otherwise.
    force_destroy: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)


class BackupBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: BackupBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("imctl:alicloud:BackupBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        rule = alicloud.oss.BucketLifecycleRuleArgs
        self.bucket = alicloud.oss.Bucket(
            f"{name}-bucket",
            bucket=args.bucket_name,
            storage_class="Standard",
            redundancy_type="ZRS",
            force_destroy=args.force_destroy,
            lifecycle_rules=[
                rule(
                    id="age-out",
                    enabled=True,
                    prefix="",
                    transitions=[
                        alicloud.oss.BucketLifecycleRuleTransitionArgs(days=30, storage_class="IA"),
                        alicloud.oss.BucketLifecycleRuleTransitionArgs(
                            days=90, storage_class="Archive"
                        ),
                    ],
                    noncurrent_version_expirations=[
                        alicloud.oss.BucketLifecycleRuleNoncurrentVersionExpirationArgs(
                            days=args.noncurrent_days
                        )
                    ],
                    abort_multipart_uploads=[
                        alicloud.oss.BucketLifecycleRuleAbortMultipartUploadArgs(days=7)
                    ],
                )
            ],
            tags=dict(args.tags),
            opts=child,
        )
        self.acl = alicloud.oss.BucketAcl(
            f"{name}-acl", bucket=self.bucket.bucket, acl="private", opts=child
        )
        self.public_access = alicloud.oss.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=self.bucket.bucket, block_public_access=True, opts=child
        )
        self.versioning = alicloud.oss.BucketVersioning(
            f"{name}-versioning", bucket=self.bucket.bucket, status="Enabled", opts=child
        )
        self.encryption = alicloud.oss.BucketServerSideEncryption(
            f"{name}-sse", bucket=self.bucket.bucket, sse_algorithm="KMS", opts=child
        )
        self.bucket_name = self.bucket.bucket
        self.register_outputs({"bucket": self.bucket_name})
