"""GCP: VPC, regional GKE, Cloud SQL PostgreSQL (REGIONAL + replica), GCS, Cloud DNS."""
