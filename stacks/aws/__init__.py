"""AWS: VPC, EKS, RDS PostgreSQL (Multi-AZ + cross-region replica), S3 backups, Route 53."""
