"""Alibaba Cloud: VPC + vSwitches, ACK, ApsaraDB RDS PostgreSQL (HA + DR instance via DTS),
OSS backups, Alidns with GTM failover."""
